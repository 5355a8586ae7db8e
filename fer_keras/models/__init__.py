"""Model builders, selected by name from one registry.

Every builder takes ``num_classes``, ``input_size``, ``channels`` and ``width``
and returns a functional ``keras.Model`` whose input is named ``face`` (raw
pixels in [0, 255], 1 or 3 channels), whose outputs are ``logits`` and
``probabilities``, and whose layer ``last_conv`` outputs the final
convolutional feature map (used by Grad-CAM).
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from fer_keras.models.gimefive import baseline, conv_net, convnet, gimefive, gimefive6
from fer_keras.models.preprocessing import FacePreprocessing
from fer_keras.models.resnet import resnet18, resnet34
from fer_keras.models.vgg import vgg

MODELS: dict[str, Callable[..., keras.Model]] = {
    "gimefive": gimefive,
    "baseline": baseline,
    "gimefive6": gimefive6,
    "vgg": vgg,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "convnet": convnet,
}


def build_model(name: str, **kwargs) -> keras.Model:
    """Builds the registered model ``name`` with the builder's keyword arguments."""
    try:
        builder = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(sorted(MODELS))}") from None
    return builder(**kwargs)


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(int(w.numpy().size) for w in model.trainable_weights))


def non_trainable_parameters(model: keras.Model) -> int:
    return int(sum(int(w.numpy().size) for w in model.non_trainable_weights))


__all__ = ["MODELS", "FacePreprocessing", "build_model", "conv_net", "trainable_parameters", "non_trainable_parameters"]
