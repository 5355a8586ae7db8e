"""tf.data pipelines over decoded faces, and Keras augmentation.

Order (as keras-io does it): slices -> cache -> shuffle (train only) ->
batch -> augment, then mix (train only) -> prefetch. Targets are given for
both model outputs: the loss reads ``logits``, the accuracy ``probabilities``.

The ``robust`` augmentation (random framing, tilt, light, camera faults and
occluders: ``fer_keras.data.robust.robust_augment``) runs in NumPy/OpenCV
before the Keras layers.

Two augmentations act on pairs of faces rather than one: ``mixup`` blends a
face with another of the batch and their targets by the same weight, and
``cutmix`` pastes a rectangle of another face and weights the targets by the
pasted area. Their weights are drawn per face from Beta(alpha, alpha).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fer_keras.data.augment import (
    AUGMENTATIONS,
    MIX_ALPHA,
    MIXES,
    augmentation,
    check_names,
)
from fer_keras.data.faces import FaceSet
from fer_keras.data.robust import robust_augment

__all__ = ["AUGMENTATIONS", "MIXES", "augmentation", "class_weights", "make_dataset", "mixer", "robust_strength"]


def robust_strength(names: tuple[str, ...], strength: float = 1.0) -> float:
    """The strength ``make_dataset(robust=...)`` takes for augmentation ``names``: 0 unless ``robust`` is named."""
    check_names(names)
    return float(strength) if "robust" in names else 0.0


def _beta(n, alpha: float) -> tf.Tensor:
    """``n`` draws from Beta(alpha, alpha)."""
    a = tf.random.gamma([n], alpha)
    b = tf.random.gamma([n], alpha)
    return a / tf.maximum(a + b, 1e-12)


def _mixup(x, lam):
    """The share of each face that stays (everywhere ``lam``), and that share."""
    return tf.ones(tf.shape(x)) * lam[:, None, None, None], lam


def _cutmix(x, lam):
    """A rectangle covering about ``1 - lam`` of each face (clipped at the border), and the share it leaves."""
    shape = tf.shape(x)
    n, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    side = tf.sqrt(1.0 - lam)
    cy, cx = tf.random.uniform([n]) * h, tf.random.uniform([n]) * w
    rows = tf.range(h)[None, :] + 0.5
    cols = tf.range(w)[None, :] + 0.5
    inside_r = tf.abs(rows - cy[:, None]) < (side * h / 2)[:, None]
    inside_c = tf.abs(cols - cx[:, None]) < (side * w / 2)[:, None]
    pasted = tf.cast(inside_r[:, :, None] & inside_c[:, None, :], tf.float32)[..., None]
    keep = 1.0 - pasted
    return keep, tf.reduce_mean(keep, axis=[1, 2, 3])


def mixer(names: tuple[str, ...], strength: float = 1.0):
    """The pair-mixing step for ``names`` (``mixup`` and/or ``cutmix``; each batch
    uses one of them at random when both are named), or None.

    Returns:
        ``mix(x, y, w=None) -> (x, y, w)``: each face is combined with another
        face of the batch (a random permutation); targets, and sample weights
        when given, are combined with the share each face keeps.
    """
    check_names(names)
    chosen = [n for n in MIXES if n in names]
    if not chosen or strength <= 0:
        return None
    makers = {"mixup": _mixup, "cutmix": _cutmix}

    def mix(x, y, w=None):
        n = tf.shape(x)[0]
        other = tf.random.shuffle(tf.range(n))
        branches = []
        for name in chosen:
            lam = _beta(n, MIX_ALPHA[name] * strength)
            branches.append(lambda lam=lam, name=name: makers[name](x, lam))
        if len(branches) == 1:
            keep, share = branches[0]()
        else:
            keep, share = tf.cond(tf.random.uniform([]) < 0.5, branches[0], branches[1])
        keep = tf.cast(keep, x.dtype)  # faces may be bfloat16 after the augmentation layers
        x = keep * x + (1.0 - keep) * tf.gather(x, other)
        share = tf.cast(share, y.dtype)
        y = share[:, None] * y + (1.0 - share[:, None]) * tf.gather(y, other)
        if w is not None:
            w = share * w + (1.0 - share) * tf.gather(w, other)
        return x, y, w

    return mix


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Balanced class weights ``N / (K * n_c)`` (0 for absent classes)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


def make_dataset(
    faces: FaceSet,
    batch_size: int,
    *,
    training: bool = False,
    soft_labels: bool = False,
    augment: keras.Sequential | None = None,
    mix=None,
    weights: np.ndarray | None = None,
    seed: int = 0,
    robust: float = 0.0,
    part: tuple[int, int] | None = None,
) -> tf.data.Dataset:
    """A dataset of ``(faces float32 [B,H,W,1] in 0..255, {"logits": y, "probabilities": y}[, w])``.

    Args:
        faces: decoded faces.
        batch_size: batch size.
        training: shuffle and augment.
        soft_labels: use the faces' vote distributions instead of one-hot targets.
        augment: augmentation model applied to training batches.
        mix: pair-mixing step applied to training batches after ``augment`` (see :func:`mixer`).
        weights: per-class sample weights (see :func:`class_weights`).
        seed: shuffle seed (and of the robust augmentation).
        robust: strength of the robust augmentation applied to training batches
            before ``augment`` (0: off).
        part: ``(i, n)``: this is process ``i`` of ``n`` training together. Every process draws the
            same global batches of ``batch_size`` (same faces, same order, same ``seed``) and keeps
            the ``i``-th of ``n`` equal slices of each, so ``n`` processes see together what one
            process sees; a last batch's remainder under ``n`` faces is left out. The augmentation
            of each slice is seeded per process (pass ``augment`` its own seed too).
    """
    targets = faces.soft if soft_labels else np.eye(faces.taxonomy.num_classes, dtype=np.float32)[faces.labels]
    tensors = [faces.images, targets]
    if weights is not None:
        tensors.append(weights[faces.labels])
    ds = tf.data.Dataset.from_tensor_slices(tuple(tensors)).cache()
    if training:
        ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    index, count = part or (0, 1)
    remainder = len(faces) % batch_size
    ds = ds.batch(batch_size, drop_remainder=0 < remainder < count)
    if count > 1:
        def my_slice(*tensors):
            size = tf.shape(tensors[0])[0] // count
            return tuple(t[index * size:(index + 1) * size] for t in tensors)

        ds = ds.map(my_slice)
    rng = np.random.default_rng(seed + 7919 + 104729 * index)

    def robust_batch(x):
        return robust_augment(x, rng, robust)

    def to_model(x, y, *w):
        x = tf.cast(x, tf.float32)
        if training and robust > 0:
            shape = tf.shape(x)
            x = tf.reshape(tf.numpy_function(robust_batch, [x], tf.float32, stateful=True), shape)
        if training and augment is not None:
            # Layer by layer: each Keras preprocessing layer runs on TensorFlow inside tf.data whatever
            # the backend, a Sequential around them would not (KERAS_BACKEND=jax fails there).
            for layer in augment.layers:
                x = layer(x, training=True)
        if training and mix is not None:
            x, y, mixed_w = mix(x, y, w[0] if w else None)
            w = (mixed_w,) if w else ()
        return (x, {"logits": y, "probabilities": y}, *w)

    return ds.map(to_model, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
