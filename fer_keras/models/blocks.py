"""Small named building blocks shared by the model builders."""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.models.preprocessing import FacePreprocessing

# PyTorch's BatchNorm2d defaults, which the paper's models use.
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9


def face_input(input_size: int, channels: int | None) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The named ``face`` input and its preprocessed tensor.

    Args:
        input_size: height and width of the face crop.
        channels: 1, 3, or None to accept either at call time.

    Returns:
        (input tensor, preprocessed float tensor with 3 channels)
    """
    if channels not in (1, 3, None):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    face = keras.Input(shape=(input_size, input_size, channels), name="face")
    return face, FacePreprocessing(name="preprocess")(face)


def batch_norm(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def classifier_head(x, num_classes: int) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """Final ``logits`` Dense and the ``probabilities`` softmax, in float32 under any
    mixed-precision policy (the usual place to leave half precision)."""
    logits = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    probabilities = layers.Softmax(name="probabilities", dtype="float32")(logits)
    return logits, probabilities
