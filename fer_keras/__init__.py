"""fer-keras: interpretable facial emotion recognition on Keras 3 and TensorFlow."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notices, oneDNN) hides real output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow turns its oneDNN kernels on only for CPUs with AVX-512 VNNI, BF16 or AMX; on an AVX2-only
# 2-core AMD EPYC they train GiMeFive 1.8x as fast and run the video client's defaults about 10 %
# faster, with the same detections and classes (BENCHMARKS.md, "TensorFlow's oneDNN kernels on an AVX2
# CPU"). Set before TensorFlow loads (the other packages but serving import this one first);
# TF_ENABLE_ONEDNN_OPTS=0 in the environment keeps them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

__all__ = ["pretrained", "__version__"]


def __getattr__(name: str):
    # `fer_keras.pretrained.load(...)` after a bare `import fer_keras`, imported on first use so that
    # `import fer_keras` stays light.
    if name == "pretrained":
        import importlib

        return importlib.import_module("fer_keras.pretrained")
    raise AttributeError(f"module 'fer_keras' has no attribute {name!r}")
