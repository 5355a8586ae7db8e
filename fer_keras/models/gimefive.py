"""GiMeFive and the plain convolutional family it belongs to.

GiMeFive is five conv blocks (64..1024 filters) and a two-layer dense head;
the paper's 4-block "Baseline" and 6-block variant are the same family with
other depths and head sizes, so one builder makes all three (and the tuner
searches the same space).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from fer_keras.models.blocks import batch_norm, classifier_head, face_input

GIMEFIVE_FILTERS = (64, 128, 256, 512, 1024)


def conv_block(x, filters: int, index: int, *, dropout: float, use_bn: bool, pooling: str, is_last: bool):
    """Conv 3x3 -> BN -> ReLU -> pool -> dropout, every layer named ``block{i}_*``.

    The last block's convolution is named ``last_conv`` (GiMeFive's Grad-CAM layer)
    and has no dropout, as in the paper.
    """
    x = layers.Conv2D(filters, 3, padding="same", name="last_conv" if is_last else f"block{index}_conv")(x)
    if use_bn:
        x = batch_norm(f"block{index}_bn")(x)
    x = layers.ReLU(name=f"block{index}_relu")(x)
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
    x = pool(2, name=f"block{index}_pool")(x)
    if dropout and not is_last:
        x = layers.Dropout(dropout, name=f"block{index}_dropout")(x)
    return x


def conv_net(
    *,
    name: str,
    num_classes: int = 6,
    input_size: int = 64,
    channels: int | None = None,
    filters: Sequence[int] = GIMEFIVE_FILTERS,
    dense_units: Sequence[int] = (2048, 1024),
    conv_dropout: float = 0.2,
    dense_dropout: float = 0.5,
    batch_norm: bool = True,
    pooling: str = "max",
) -> keras.Model:
    """Builds a GiMeFive-family network.

    Args:
        name: model name.
        num_classes: size of the output layer.
        input_size: face crop height and width; each block halves it.
        channels: input channels (1, 3, or None for either).
        filters: filters per conv block; the block count is its length.
        dense_units: hidden dense layers of the head, after global average pooling.
        conv_dropout: dropout after every conv block but the last.
        dense_dropout: dropout after every hidden dense layer but the last.
        batch_norm: whether conv blocks use batch normalisation.
        pooling: "max" or "avg" pooling inside the blocks.

    Returns:
        A functional ``keras.Model`` with outputs ``{"logits", "probabilities"}``.
    """
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    if input_size < 2 ** len(filters):
        raise ValueError(
            f"input_size {input_size} is too small for {len(filters)} blocks (needs >= {2 ** len(filters)})"
        )
    face, x = face_input(input_size, channels)
    for i, width in enumerate(filters, start=1):
        x = conv_block(x, width, i, dropout=conv_dropout, use_bn=batch_norm, pooling=pooling, is_last=i == len(filters))
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    for j, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{j}")(x)
        if dense_dropout and j < len(dense_units):
            x = layers.Dropout(dense_dropout, name=f"dense{j}_dropout")(x)
    logits, probabilities = classifier_head(x, num_classes)
    return keras.Model(face, {"logits": logits, "probabilities": probabilities}, name=name)


def _scaled(values: Sequence[int], width: float) -> tuple[int, ...]:
    return tuple(max(1, int(round(v * width))) for v in values)


def gimefive(
    num_classes: int = 6, input_size: int = 64, channels: int | None = None, width: float = 1.0
) -> keras.Model:
    """GiMeFive as published: 10,478,086 trainable parameters at width 1."""
    return conv_net(
        name="gimefive", num_classes=num_classes, input_size=input_size, channels=channels,
        filters=_scaled(GIMEFIVE_FILTERS, width), dense_units=_scaled((2048, 1024), width),
    )


def baseline(
    num_classes: int = 6, input_size: int = 64, channels: int | None = None, width: float = 1.0
) -> keras.Model:
    """The paper's 4-block "Baseline": 2,606,086 trainable parameters at width 1."""
    return conv_net(
        name="baseline", num_classes=num_classes, input_size=input_size, channels=channels,
        filters=_scaled(GIMEFIVE_FILTERS[:4], width), dense_units=_scaled((1024, 512), width),
    )


def gimefive6(
    num_classes: int = 6, input_size: int = 64, channels: int | None = None, width: float = 1.0
) -> keras.Model:
    """The paper's 6-block variant: 41,950,726 trainable parameters at width 1."""
    return conv_net(
        name="gimefive6", num_classes=num_classes, input_size=input_size, channels=channels,
        filters=_scaled(GIMEFIVE_FILTERS + (2048,), width), dense_units=_scaled((4096, 2048), width),
    )


def convnet(
    num_classes: int = 6,
    input_size: int = 64,
    channels: int | None = None,
    width: float = 1.0,
    blocks: int = 5,
    dense_units: int = 2048,
    conv_dropout: float = 0.2,
    dense_dropout: float = 0.5,
    batch_norm: bool = True,
    pooling: str = "max",
) -> keras.Model:
    """The GiMeFive family with its shape as parameters (what the tuner searches).

    ``blocks`` conv blocks of 64, 128, ... filters (times ``width``), then dense
    layers of ``dense_units`` and ``dense_units / 2``. With the defaults it is GiMeFive.
    """
    filters = tuple(64 * 2 ** i for i in range(blocks))
    return conv_net(
        name="convnet", num_classes=num_classes, input_size=input_size, channels=channels,
        filters=_scaled(filters, width), dense_units=_scaled((dense_units, dense_units // 2), width),
        conv_dropout=conv_dropout, dense_dropout=dense_dropout, batch_norm=batch_norm, pooling=pooling,
    )
