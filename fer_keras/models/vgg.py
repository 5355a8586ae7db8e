"""The VGG (+BN) baseline of the GiMeFive paper, trained from scratch at 64x64."""

from __future__ import annotations

import keras
from keras import layers

from fer_keras.models.blocks import batch_norm, classifier_head, face_input

VGG_FILTERS = (64, 128, 256)


def vgg(
    num_classes: int = 6,
    input_size: int = 64,
    channels: int | None = None,
    width: float = 1.0,
    shared_bn: bool = True,
) -> keras.Model:
    """Three pairs of 3x3 convs with max pooling, then FC 4096 -> 1024 -> classes.

    Args:
        num_classes: size of the output layer.
        input_size: face crop size (divisible by 8).
        channels: input channels (1, 3, or None for either).
        width: multiplier on every conv and dense width (1.0 is the paper's).
        shared_bn: apply one BatchNorm layer to both convs of a pair, as the
            authors' code does (72,460,742 trainable parameters). With False,
            each conv gets its own BatchNorm: 896 more trainable parameters
            (72,461,638).

    Returns:
        A functional ``keras.Model`` with outputs ``{"logits", "probabilities"}``.
    """
    face, x = face_input(input_size, channels)
    for i, base in enumerate(VGG_FILTERS, start=1):
        filters = max(1, int(round(base * width)))
        first_bn = batch_norm(f"pair{i}_bn" if shared_bn else f"pair{i}_bn_a")
        second_bn = first_bn if shared_bn else batch_norm(f"pair{i}_bn_b")
        x = layers.Conv2D(filters, 3, padding="same", name=f"pair{i}_conv_a")(x)
        x = layers.ReLU(name=f"pair{i}_relu_a")(first_bn(x))
        x = layers.Dropout(0.2, name=f"pair{i}_dropout")(x)
        is_last = i == len(VGG_FILTERS)
        x = layers.Conv2D(filters, 3, padding="same", name="last_conv" if is_last else f"pair{i}_conv_b")(x)
        x = layers.ReLU(name=f"pair{i}_relu_b")(second_bn(x))
        x = layers.MaxPooling2D(2, name=f"pair{i}_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    for j, units in enumerate((4096, 1024), start=1):
        x = layers.Dense(max(1, int(round(units * width))), activation="relu", name=f"fc{j}")(x)
        x = layers.Dropout(0.5, name=f"fc{j}_dropout")(x)
    logits, probabilities = classifier_head(x, num_classes)
    return keras.Model(face, {"logits": logits, "probabilities": probabilities}, name="vgg")
