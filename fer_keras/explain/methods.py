"""The explanation methods: one registry from which the command-line choices, the served
SavedModel signatures and the client's choices all derive.

Every method is one :class:`CamMethod`: its tf-keras-vis class (run by
``fer_keras.explain.cams.explain``) and, for the methods a SavedModel can
serve, a function in TensorFlow ops from (target activations, gradients of the
class score) to maps, run by ``fer_keras.explain.cams.cam_tape`` inside the
exported signatures (``fer_keras.exporting`` exports one signature per served
method, named here; ``clients.EmotionClient.explain(..., method=...)`` asks for
it). Adding a method is one such function and one registry line.

This module imports TensorFlow only when a served form runs, so command lines
can list the methods before TensorFlow loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Score-CAM masks the input with each target channel: 1024 forward passes per face on
# GiMeFive. Faster-Score-CAM keeps the channels with the most varied activations.
SCORECAM_CHANNELS = 64
# The fused LayerCAM reads every stage from this resolution down (16x16, 8x8 and 4x4 on GiMeFive at 64x64):
# chosen by deletion / insertion on 600 FER2013 test faces (RESULTS.md, "Faithfulness at face resolution").
FUSED_FINEST = 16
# Integrated gradients: gradient passes per face (the midpoints of this many equal steps from the baseline).
IG_STEPS = 16


# ----------------------------------------------------------------------------- served forms (TensorFlow ops)


def _tf():
    import tensorflow as tf

    return tf


def _spatial(x):
    """Sum over the spatial axes of ``[N, h, w, C]``, kept for broadcasting."""
    return _tf().reduce_sum(x, axis=(1, 2), keepdims=True)


def _gradcam(activations, grads):
    """Grad-CAM: channels weighted by their mean gradient, then ReLU."""
    tf = _tf()
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # per face, never over the batch
    return tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))


def _gradcam_plus_plus(activations, grads):
    """Grad-CAM++ (Chattopadhyay et al. 2018) with an exponential score, whose factor cancels after
    normalisation: alpha = g^2 / (2 g^2 + sum(A) g^3) per position, normalised over the positions of
    each channel as tf-keras-vis does; channel weights sum(alpha * relu(g))."""
    tf = _tf()
    g2, g3 = grads * grads, grads * grads * grads
    denominator = 2.0 * g2 + _spatial(activations) * g3
    alphas = g2 / (denominator + tf.cast(g2 == 0.0, g2.dtype))
    total = _spatial(alphas)
    alphas = alphas / (total + tf.cast(total == 0.0, total.dtype))
    weights = _spatial(tf.nn.relu(grads) * alphas)
    return tf.nn.relu(tf.reduce_sum(activations * weights, axis=-1))


def _layercam(activations, grads):
    """LayerCAM (Jiang et al. 2021): each position weighted by its own positive gradient."""
    tf = _tf()
    return tf.nn.relu(tf.reduce_sum(activations * tf.nn.relu(grads), axis=-1))


def _gradact(activations, grads):
    """Gradient x activation: each position's activations weighted by their own (signed) gradients,
    summed over the channels, then ReLU. Unlike LayerCAM, negative gradients count against a position,
    so the map depends on the class score and not mostly on the activations (see the sanity checks)."""
    tf = _tf()
    return tf.nn.relu(tf.reduce_sum(activations * grads, axis=-1))


def minmax_maps(maps):
    """Per-map min-max to [0, 1] in TensorFlow ops; a constant map becomes zeros."""
    tf = _tf()
    lo = tf.reduce_min(maps, axis=(1, 2), keepdims=True)
    span = tf.reduce_max(maps, axis=(1, 2), keepdims=True) - lo
    return tf.where(span > 1e-12, (maps - lo) / tf.maximum(span, 1e-12), tf.zeros_like(maps))


def fuse_maps(maps, size):
    """The multi-layer fusion: each layer's map min-max normalised per face, resized bilinearly to
    ``size`` (h, w) and averaged over the layers. ``maps``: ``[N, h_i, w_i]`` arrays or tensors."""
    tf = _tf()
    resized = [tf.image.resize(minmax_maps(tf.convert_to_tensor(m, tf.float32))[..., None], size, "bilinear")[..., 0]
               for m in maps]
    return tf.add_n(resized) / len(resized)


def _integrated(differences, mean_grads):
    """Integrated gradients (Sundararajan et al. 2017) from the face's mean grey level: the face minus
    that baseline times the gradients averaged along the straight path between them (``mean_grads``:
    :data:`IG_STEPS` midpoints), summed over the channels, then ReLU (the pixels that speak for the class)."""
    tf = _tf()
    return tf.nn.relu(tf.reduce_sum(differences * mean_grads, axis=-1))


def _layercam_fused(stages):
    """LayerCAM at every stage (``[(activations, gradients), ...]``, finest first), fused by :func:`fuse_maps`
    at the finest stage's resolution."""
    return fuse_maps([_layercam(a, g) for a, g in stages], stages[0][0].shape[1:3])


def _gradact_fused(stages):
    """:func:`_gradact` at every stage, fused by :func:`fuse_maps` at the finest stage's resolution."""
    return fuse_maps([_gradact(a, g) for a, g in stages], stages[0][0].shape[1:3])


def _saliency(faces, grads):
    """Vanilla saliency: the largest absolute input gradient over the channels of each pixel."""
    tf = _tf()
    return tf.reduce_max(tf.abs(grads), axis=-1)


@dataclass(frozen=True)
class CamMethod:
    """One explanation method.

    Attributes:
        name: the name users give (``--method``, ``EmotionClient.explain(method=...)``).
        visualizer: the tf-keras-vis class, ``"module:Class"``, that :func:`explain` runs; None for a
            method tf-keras-vis does not have (:func:`explain` runs the served form).
        served: its form in TensorFlow ops, ``(activations, gradients) -> [N, h, w]`` maps, or None
            for a method a SavedModel does not serve (Score-CAM: a forward pass per channel).
        signature: the SavedModel signature serving it.
        on_input: the map is over the input pixels (gradients of the face), not the target layer.
        integrated: the method integrates input gradients along the path from the face's mean grey
            level to the face (:data:`IG_STEPS` gradient passes); ``served`` takes (face - baseline,
            mean gradient).
        stages: the method reads the last activation of every resolution stage from
            :data:`FUSED_FINEST` pixels down to the target layer (``fer_keras.explain.cams.stage_layers``):
            ``served`` takes a list of (activations, gradients), finest first, and :func:`explain` runs
            the tf-keras-vis class once per stage and fuses with :func:`fuse_maps`.
        per_face: :func:`explain` gives tf-keras-vis one face at a time (Faster-Score-CAM picks its
            channels over the whole batch it is given: one face keeps each map independent of its batch).
        options: further keyword arguments of the tf-keras-vis call.
        caveat: what the sanity checks found against the method (empty when it passed them), shown in
            ``--help`` beside its name (``python -m fer_keras.explain --sanity``; RESULTS.md).
    """

    name: str
    visualizer: str | None
    served: Callable | None = None
    signature: str = ""
    on_input: bool = False
    integrated: bool = False
    stages: bool = False
    per_face: bool = False
    options: tuple[tuple[str, object], ...] = ()
    caveat: str = ""


# Cascading randomisation on 120 FER2013 test faces with the shipped model (RESULTS.md): these methods' maps keep a
# rank correlation of 0.56-0.82 with the trained model's once every layer from the output to last_conv is shuffled.
_FAILS_SANITY = "fails the sanity check: its maps barely change when the top layers are randomised"

CAM_METHODS: dict[str, CamMethod] = {m.name: m for m in (
    CamMethod("gradcam", "tf_keras_vis.gradcam:Gradcam", _gradcam, "gradcam"),
    CamMethod("gradcam++", "tf_keras_vis.gradcam_plus_plus:GradcamPlusPlus", _gradcam_plus_plus, "gradcam_plus_plus",
              caveat=_FAILS_SANITY),
    CamMethod("scorecam", "tf_keras_vis.scorecam:Scorecam", per_face=True,
              options=(("max_N", SCORECAM_CHANNELS), ("batch_size", 256))),
    CamMethod("layercam", "tf_keras_vis.layercam:Layercam", _layercam, "layercam", caveat=_FAILS_SANITY),
    CamMethod("saliency", "tf_keras_vis.saliency:Saliency", _saliency, "saliency", on_input=True),
    CamMethod("layercam-fused", "tf_keras_vis.layercam:Layercam", _layercam_fused, "layercam_fused", stages=True,
              caveat=_FAILS_SANITY),
    CamMethod("gradact-fused", None, _gradact_fused, "gradact_fused", stages=True),
    CamMethod("integrated-gradients", None, _integrated, "integrated_gradients", on_input=True, integrated=True),
)}
METHODS = tuple(CAM_METHODS)
# What the explain command and the video client draw unless told otherwise: the served method that beat
# every random baseline on deletion and insertion in every class and passed the sanity checks, at
# 1.4-1.6x Grad-CAM's cost per face (RESULTS.md, "Faithfulness at face resolution").
DEFAULT_METHOD = "gradact-fused"
SERVED_METHODS = tuple(name for name, m in CAM_METHODS.items() if m.served is not None)


def methods_help(names=None) -> str:
    """The methods for a ``--help`` text, each failing method marked with its caveat."""
    return "; ".join(f"{n} ({CAM_METHODS[n].caveat})" if CAM_METHODS[n].caveat else n for n in (names or METHODS))


def cam_method(name: str) -> CamMethod:
    """The registered method ``name``; one clear error for any other."""
    try:
        return CAM_METHODS[name]
    except KeyError:
        raise ValueError(f"unknown explanation method {name!r}; choose one of: {', '.join(METHODS)}") from None
