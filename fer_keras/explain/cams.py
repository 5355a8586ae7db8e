"""Saliency maps for batches of faces: the methods of ``fer_keras.explain.methods``, run with
tf-keras-vis (:func:`explain`) or, for the served ones, with a GradientTape in TensorFlow ops
(:func:`cam_tape`, which the SavedModel signatures run).

The class score is the logit (not the softmax), as the GiMeFive authors did.
Maps are normalised per face to [0, 1] (min-max); a constant map, such as an
all-zero Grad-CAM, comes back as zeros with no NaN and no warning.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass

import cv2
import keras
import numpy as np
import tensorflow as tf

from fer_keras.explain.methods import (
    CAM_METHODS,
    FUSED_FINEST,
    METHODS,
    SERVED_METHODS,
    cam_method,
    fuse_maps,
    minmax_maps,
)

__all__ = ["CAM_METHODS", "METHODS", "RAW_CONV", "SERVED_METHODS", "Explanation", "activation_layer", "cam_method",
           "cam_tape", "explain", "gradcam_model", "normalize_maps", "resize_map", "stage_layers"]

# The paper's Grad-CAM layer: the fifth convolution's raw output, before batch norm and ReLU. Its
# gradient-weighted sum is negative everywhere on many faces, so Grad-CAM's final ReLU blanks the map
# (73 of 600 FER2013 test faces with the earlier shipped model, 42 % of the happy ones: RESULTS.md).
RAW_CONV = "last_conv"

def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Per-map min-max to [0, 1]; constant maps become zeros."""
    maps = np.asarray(maps, np.float32)
    flat = maps.reshape(len(maps), -1)
    lo, hi = flat.min(1), flat.max(1)
    span = hi - lo
    out = np.zeros_like(flat)
    ok = span > 1e-12
    out[ok] = (flat[ok] - lo[ok, None]) / span[ok, None]
    return out.reshape(maps.shape)


def resize_map(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of one [h, w] map to ``height`` x ``width``, kept in [0, 1]."""
    return np.clip(
        cv2.resize(heatmap.astype(np.float32), (int(width), int(height)), interpolation=cv2.INTER_LINEAR), 0, 1
    )


@dataclass
class Explanation:
    """Maps for a batch: ``maps`` [N, h, w] in [0, 1] at the method's own resolution
    (the target layer's for CAMs, the input's for saliency), the explained
    ``class_ids`` and the model's ``probabilities``."""

    method: str
    maps: np.ndarray
    class_ids: np.ndarray
    probabilities: np.ndarray


def _logits_model(model: keras.Model) -> keras.Model:
    return keras.Model(model.inputs, model.get_layer("logits").output, name=f"{model.name}_logits")


def activation_layer(model: keras.Model) -> str:
    """The default target layer of the CAM methods: the first ReLU at or after ``last_conv`` in the
    model's layer order, that is the activations the rest of the network reads (``block5_relu`` on
    GiMeFive, ``pairN_relu_b`` on VGG, ``last_conv`` itself on ResNet, whose block output is a ReLU)."""
    names = [layer.name for layer in model.layers]
    if RAW_CONV not in names:
        raise ValueError(f"the model has no layer {RAW_CONV!r} (every fer_keras architecture names its last "
                         f"convolution so); name the target layer explicitly")
    for layer in model.layers[names.index(RAW_CONV):]:
        if _is_relu(layer):
            return layer.name
    raise ValueError(f"no ReLU follows {RAW_CONV!r} in {model.name}; name the target layer explicitly")


def _is_relu(layer) -> bool:
    return isinstance(layer, keras.layers.ReLU) or (
        isinstance(layer, keras.layers.Activation) and getattr(layer.activation, "__name__", "") == "relu")


def stage_layers(model: keras.Model, layer: str | None = None, finest: int = FUSED_FINEST) -> list[str]:
    """The layers a multi-layer method reads, finest first: the last ReLU of every spatial resolution up
    to ``finest`` pixels, ending with the target layer (``layer``, default :func:`activation_layer`);
    ``block3_relu``, ``block4_relu``, ``block5_relu`` on GiMeFive at 64x64."""
    target = _target_layer(model, layer)
    names = [candidate.name for candidate in model.layers]
    last_of_size: dict[int, str] = {}
    for candidate in model.layers[: names.index(target)]:
        shape = candidate.output.shape
        if _is_relu(candidate) and len(shape) == 4 and shape[1] is not None and shape[1] <= finest:
            last_of_size[int(shape[1])] = candidate.name
    target_size = model.get_layer(target).output.shape[1]
    chosen = [name for size, name in sorted(last_of_size.items(), reverse=True) if size != target_size]
    return chosen + [target]


def _target_layer(model: keras.Model, layer: str | None) -> str:
    layer = activation_layer(model) if layer is None else layer
    _check_layer(model, layer)
    return layer


def _check_layer(model: keras.Model, layer: str) -> None:
    try:
        model.get_layer(layer)
    except ValueError:
        raise ValueError(f"the model has no layer {layer!r}; its conv layers: "
                         f"{[c.name for c in model.layers if isinstance(c, keras.layers.Conv2D)]}") from None


def explain(
    model: keras.Model,
    faces: np.ndarray,
    method: str = "gradcam",
    class_ids: np.ndarray | int | None = None,
    layer: str | None = None,
    batch_size: int = 64,
) -> Explanation:
    """Explains ``model``'s decisions on ``faces`` with tf-keras-vis (with the served form, for a method
    tf-keras-vis does not have).

    Args:
        model: a fer_keras model (``logits`` and ``probabilities`` outputs).
        faces: ``[N, H, W, C]`` raw faces (uint8 or float in 0..255).
        method: one of ``METHODS``.
        class_ids: the class to explain per face, one class for all, or None
            for each face's predicted class.
        layer: the target layer of the CAM methods; None: :func:`activation_layer` (the activation
            after ``last_conv``); :data:`RAW_CONV` reproduces the paper's raw-convolution hook.
        batch_size: faces per gradient pass.
    """
    entry = cam_method(method)
    faces = np.asarray(faces)
    if faces.ndim != 4:
        raise ValueError(f"faces must be [N, H, W, C], got shape {faces.shape}")
    layer = _target_layer(model, layer)
    x_all = faces.astype(np.float32)
    probabilities = (
        np.asarray(model.predict(x_all, batch_size=max(batch_size, 1), verbose=0)["probabilities"])
        if len(faces)
        else np.zeros((0, 0))
    )
    if class_ids is None:
        targets = probabilities.argmax(1) if len(faces) else np.zeros(0, int)
    else:
        targets = np.broadcast_to(np.asarray(class_ids, int), (len(faces),)).copy()
    if entry.visualizer is None:  # no tf-keras-vis class: the served form, batch by batch
        explainer = gradcam_model(model, layer)
        maps = [cam_tape(explainer, tf.constant(x_all[i:i + batch_size]), method,
                         tf.constant(targets[i:i + batch_size], tf.int64))[0].numpy()
                for i in range(0, len(faces), max(batch_size, 1))]
        native = np.concatenate(maps) if maps else np.zeros((0, 1, 1), np.float32)
        return Explanation(method, normalize_maps(native), targets, probabilities)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tf-keras-vis imports a deprecated scipy path
        from tf_keras_vis.utils.scores import CategoricalScore

        module, _, cls = entry.visualizer.partition(":")
        maker = getattr(importlib.import_module(module), cls)

    stages = stage_layers(model, layer) if entry.stages else []
    logits = _logits_model(model)
    visualizer = maker(logits, clone=False)
    maps = []
    bars = keras.config.is_interactive_logging_enabled()
    keras.config.disable_interactive_logging()  # Score-CAM's internal predict() would print progress bars
    try:
        with warnings.catch_warnings():
            # tf-keras-vis hands inputs over as a list or tuple; Keras warns about it, harmlessly.
            warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
            step = 1 if entry.per_face else batch_size
            for start in range(0, len(faces), step):
                x = x_all[start:start + step]
                score = CategoricalScore(targets[start:start + step].tolist())
                if entry.on_input:
                    m = visualizer(score, x, normalize_map=False)
                elif entry.stages:
                    m = fuse_maps([visualizer(score, x, penultimate_layer=name, seek_penultimate_conv_layer=False,
                                              expand_cam=False, normalize_cam=False, **dict(entry.options))
                                   for name in stages], model.get_layer(stages[0]).output.shape[1:3]).numpy()
                else:
                    kwargs = dict(entry.options)
                    m = visualizer(score, x, penultimate_layer=layer, seek_penultimate_conv_layer=False,
                                   expand_cam=False, normalize_cam=False, **kwargs)
                maps.append(np.asarray(m).reshape(len(x), *np.asarray(m).shape[-2:]))
    finally:
        if bars:
            keras.config.enable_interactive_logging()
    native = np.concatenate(maps) if maps else np.zeros((0, 1, 1), np.float32)
    return Explanation(method, normalize_maps(native), targets, probabilities)


def gradcam_model(model: keras.Model, layer: str | None = None) -> keras.Model:
    """A model with outputs (target-layer activations, logits, probabilities, then the activations of
    :func:`stage_layers`, finest first), for :func:`cam_tape`; ``layer`` as in :func:`explain`."""
    layer = _target_layer(model, layer)
    stages = [model.get_layer(name).output for name in stage_layers(model, layer)]
    return keras.Model(model.input, [model.get_layer(layer).output, model.get_layer("logits").output,
                                      model.get_layer("probabilities").output, *stages])


def cam_tape(explainer: keras.Model, faces, method: str = "gradcam", class_ids=None):
    """A served method of the registry with a plain GradientTape, in TensorFlow ops (usable inside a
    SavedModel signature).

    Args:
        explainer: the model from :func:`gradcam_model`.
        faces: ``[N, H, W, C]`` float tensor.
        method: a name in :data:`SERVED_METHODS`.
        class_ids: int ``[N]`` classes to explain, or None for the predicted ones.

    Returns:
        (maps ``[N, h, w]`` in [0, 1], probabilities ``[N, K]``, class ids ``[N]``)
    """
    entry = cam_method(method)
    if entry.served is None:
        raise ValueError(f"{method} has no served form; served methods: {', '.join(SERVED_METHODS)}")
    if entry.integrated:
        return _integrated_tape(explainer, faces, entry, class_ids)
    with tf.GradientTape() as tape:
        tape.watch(faces)
        activations, logits, probabilities, *stages = explainer(faces, training=False)
        if class_ids is None:
            class_ids = tf.argmax(logits, axis=-1, output_type=tf.int64)
        score = tf.gather(logits, class_ids, batch_dims=1)
    if entry.stages:
        cam = entry.served(list(zip(stages, tape.gradient(score, stages))))
    else:
        target = faces if entry.on_input else activations
        cam = entry.served(target, tape.gradient(score, target))
    return minmax_maps(cam), probabilities, class_ids


def _integrated_tape(explainer: keras.Model, faces, entry, class_ids):
    """:func:`cam_tape` for integrated gradients: ``IG_STEPS`` gradient passes along the path from each
    face's mean grey level to the face, the explained class fixed by the face itself."""
    from fer_keras.explain.methods import IG_STEPS

    _, logits, probabilities, *_ = explainer(faces, training=False)
    if class_ids is None:
        class_ids = tf.argmax(logits, axis=-1, output_type=tf.int64)
    baseline = tf.broadcast_to(tf.reduce_mean(faces, axis=(1, 2, 3), keepdims=True), tf.shape(faces))
    difference = faces - baseline
    total = tf.zeros_like(faces)
    for k in range(IG_STEPS):
        point = baseline + ((k + 0.5) / IG_STEPS) * difference
        with tf.GradientTape() as tape:
            tape.watch(point)
            score = tf.gather(explainer(point, training=False)[1], class_ids, batch_dims=1)
        total += tape.gradient(score, point)
    return minmax_maps(entry.served(difference, total / IG_STEPS)), probabilities, class_ids
