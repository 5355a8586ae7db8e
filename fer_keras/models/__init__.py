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


def architecture_record(model: str, image_size: int, width: float = 1.0, channels: int = 1,
                        options: dict | None = None) -> dict:
    """How to build a model, as weights manifests and run configs store it."""
    return {"model": model, "width": float(width), "image_size": int(image_size), "channels": int(channels),
            "options": dict(options or {})}


def build_from_architecture(architecture: dict, num_classes: int) -> keras.Model:
    """The model an architecture record (:func:`architecture_record`) describes, freshly initialised."""
    arch = {"width": 1.0, "channels": 1, "options": {}, **architecture}
    return build_model(arch["model"], num_classes=num_classes, input_size=arch["image_size"],
                       channels=arch["channels"], width=arch["width"], **arch["options"])


def transfer_weights(donor: keras.Model, model: keras.Model, source: str = "the donor") -> list[str]:
    """Copies ``donor``'s weights into ``model`` layer by layer, matched by name.

    A layer whose weights have other shapes keeps its own (the ``logits`` layer
    when the class view changes, six to seven classes); if that is the case
    for more than the head, the models are not the same architecture.

    Returns:
        the names of the layers that kept their own weights.

    Raises:
        ValueError: layers other than ``logits`` do not match.
    """
    theirs = {layer.name: layer for layer in donor.layers if layer.weights}
    kept = []
    for layer in (layer for layer in model.layers if layer.weights):
        other = theirs.get(layer.name)
        if other is not None and [w.shape for w in other.weights] == [w.shape for w in layer.weights]:
            layer.set_weights(other.get_weights())
        else:
            kept.append(layer.name)
    if set(kept) - {"logits"}:
        raise ValueError(f"{source}: its weights do not fit this architecture (no match for "
                         f"{', '.join(kept)}; same model, width and options needed)")
    return kept


def trainable_parameters(model: keras.Model) -> int:
    return int(sum(int(w.numpy().size) for w in model.trainable_weights))


def non_trainable_parameters(model: keras.Model) -> int:
    return int(sum(int(w.numpy().size) for w in model.non_trainable_weights))


__all__ = [
    "MODELS",
    "FacePreprocessing",
    "architecture_record",
    "build_from_architecture",
    "build_model",
    "conv_net",
    "trainable_parameters",
    "non_trainable_parameters",
    "transfer_weights",
]
