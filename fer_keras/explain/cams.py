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

from fer_keras.explain.methods import CAM_METHODS, METHODS, SERVED_METHODS, cam_method

__all__ = ["CAM_METHODS", "METHODS", "SERVED_METHODS", "Explanation", "cam_method", "cam_tape", "explain",
           "gradcam_model", "normalize_maps", "resize_map"]

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
    layer: str = "last_conv",
    batch_size: int = 64,
) -> Explanation:
    """Explains ``model``'s decisions on ``faces`` with tf-keras-vis.

    Args:
        model: a fer_keras model (``logits`` and ``probabilities`` outputs).
        faces: ``[N, H, W, C]`` raw faces (uint8 or float in 0..255).
        method: one of ``METHODS``.
        class_ids: the class to explain per face, one class for all, or None
            for each face's predicted class.
        layer: the target layer of the CAM methods (``last_conv`` by default).
        batch_size: faces per gradient pass.
    """
    entry = cam_method(method)
    faces = np.asarray(faces)
    if faces.ndim != 4:
        raise ValueError(f"faces must be [N, H, W, C], got shape {faces.shape}")
    _check_layer(model, layer)
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tf-keras-vis imports a deprecated scipy path
        from tf_keras_vis.utils.scores import CategoricalScore

        module, _, cls = entry.visualizer.partition(":")
        maker = getattr(importlib.import_module(module), cls)

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


def gradcam_model(model: keras.Model, layer: str = "last_conv") -> keras.Model:
    """A model with outputs (target-layer activations, logits, probabilities), for :func:`cam_tape`."""
    _check_layer(model, layer)
    return keras.Model(model.input, [model.get_layer(layer).output, model.get_layer("logits").output,
                                      model.get_layer("probabilities").output])


def cam_tape(three_outputs: keras.Model, faces, method: str = "gradcam", class_ids=None):
    """A served method of the registry with a plain GradientTape, in TensorFlow ops (usable inside a
    SavedModel signature).

    Args:
        three_outputs: the model from :func:`gradcam_model`.
        faces: ``[N, H, W, C]`` float tensor.
        method: a name in :data:`SERVED_METHODS`.
        class_ids: int ``[N]`` classes to explain, or None for the predicted ones.

    Returns:
        (maps ``[N, h, w]`` in [0, 1], probabilities ``[N, K]``, class ids ``[N]``)
    """
    entry = cam_method(method)
    if entry.served is None:
        raise ValueError(f"{method} has no served form; served methods: {', '.join(SERVED_METHODS)}")
    with tf.GradientTape() as tape:
        tape.watch(faces)
        activations, logits, probabilities = three_outputs(faces, training=False)
        if class_ids is None:
            class_ids = tf.argmax(logits, axis=-1, output_type=tf.int64)
        score = tf.gather(logits, class_ids, batch_dims=1)
    target = faces if entry.on_input else activations
    cam = entry.served(target, tape.gradient(score, target))
    lo = tf.reduce_min(cam, axis=(1, 2), keepdims=True)
    span = tf.reduce_max(cam, axis=(1, 2), keepdims=True) - lo
    cam = tf.where(span > 1e-12, (cam - lo) / tf.maximum(span, 1e-12), tf.zeros_like(cam))
    return cam, probabilities, class_ids
