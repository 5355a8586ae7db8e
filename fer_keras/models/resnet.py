"""ResNet18 / ResNet34 baselines as the GiMeFive paper trains them at 64x64.

Stem: 7x7 stride-2 convolution without the usual max pool; bias-free
convolutions; basic residual blocks; global average pooling -> Dense.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from fer_keras.models.blocks import batch_norm, classifier_head, face_input

STAGE_FILTERS = (64, 128, 256, 512)


def basic_block(x, filters: int, stride: int, name: str, output_name: str | None = None):
    """Two 3x3 convs with a projection shortcut when the shape changes."""
    shortcut = x
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.ReLU(name=f"{name}_relu1")(batch_norm(f"{name}_bn1")(y))
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = batch_norm(f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = batch_norm(f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=output_name or f"{name}_out")(y)


def resnet(
    blocks_per_stage: Sequence[int],
    *,
    name: str,
    num_classes: int = 6,
    input_size: int = 64,
    channels: int | None = None,
    width: float = 1.0,
) -> keras.Model:
    """Builds a basic-block ResNet.

    The output of the final residual block is named ``last_conv`` (the feature
    map Grad-CAM uses).

    Returns:
        A functional ``keras.Model`` with outputs ``{"logits", "probabilities"}``.
    """
    face, x = face_input(input_size, channels)
    stem = max(1, int(round(64 * width)))
    x = layers.Conv2D(stem, 7, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(name="stem_relu")(batch_norm("stem_bn")(x))
    n_stages = len(blocks_per_stage)
    for s, (count, base) in enumerate(zip(blocks_per_stage, STAGE_FILTERS), start=1):
        filters = max(1, int(round(base * width)))
        for b in range(1, count + 1):
            stride = 2 if (b == 1 and s > 1) else 1
            is_last = s == n_stages and b == count
            x = basic_block(x, filters, stride, f"stage{s}_block{b}", "last_conv" if is_last else None)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    logits, probabilities = classifier_head(x, num_classes)
    return keras.Model(face, {"logits": logits, "probabilities": probabilities}, name=name)


def resnet18(
    num_classes: int = 6, input_size: int = 64, channels: int | None = None, width: float = 1.0
) -> keras.Model:
    """ResNet18: 11,179,590 trainable parameters at width 1 and 6 classes."""
    return resnet(
        (2, 2, 2, 2), name="resnet18", num_classes=num_classes, input_size=input_size, channels=channels, width=width
    )


def resnet34(
    num_classes: int = 6, input_size: int = 64, channels: int | None = None, width: float = 1.0
) -> keras.Model:
    """ResNet34: 21,287,750 trainable parameters at width 1 and 6 classes."""
    return resnet(
        (3, 4, 6, 3), name="resnet34", num_classes=num_classes, input_size=input_size, channels=channels, width=width
    )
