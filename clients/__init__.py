"""The client side: a gRPC (and REST) client of TF Serving's API, face detection and tracking, batched
classification and served explanations over videos and a live camera (``python -m clients.video``).

``from clients.client import EmotionClient`` is the library entry point; it imports nothing of
``serving`` and needs no model file.
"""

import fer_keras  # noqa: F401  (its environment defaults for TensorFlow, set before TensorFlow loads)
