"""fer-keras: interpretable facial emotion recognition on Keras 3 and TensorFlow."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notices, oneDNN) hides real output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

from fer_keras import pretrained  # noqa: E402  (light: numpy only until a model is loaded)

__all__ = ["pretrained", "__version__"]
