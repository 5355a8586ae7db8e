"""fer-keras: interpretable facial emotion recognition on Keras 3 and TensorFlow."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notices, oneDNN) hides real output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["pretrained", "__version__"]


def __getattr__(name: str):
    # `fer_keras.pretrained.load(...)` after a bare `import fer_keras`, imported on first use so that
    # `import fer_keras` stays light.
    if name == "pretrained":
        import importlib

        return importlib.import_module("fer_keras.pretrained")
    raise AttributeError(f"module 'fer_keras' has no attribute {name!r}")
