"""tf.data pipelines over decoded faces, and Keras augmentation.

Order (as keras-io does it): slices -> cache -> shuffle (train only) ->
batch -> augment (train only) -> prefetch. Targets are given for both model
outputs: the loss reads ``logits``, the accuracy ``probabilities``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from fer_keras.data.faces import FaceSet

AUGMENTATIONS = ("flip", "rotate", "zoom", "shift", "contrast", "brightness", "erase")


def augmentation(names: tuple[str, ...] = ("flip",), strength: float = 1.0, seed: int | None = None) -> keras.Sequential | None:
    """Keras random layers for ``names`` (see ``AUGMENTATIONS``), scaled by ``strength``.

    At strength 1: rotation +-10 degrees, zoom and shift 10 %, contrast and
    brightness 20 %, erasing of 2-20 % of the face. Returns None for no names.
    """
    unknown = set(names) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; choose from: {', '.join(AUGMENTATIONS)}")
    if not names:
        return None
    s = float(strength)
    makers = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed, name="flip"),
        "rotate": lambda: keras.layers.RandomRotation(10 * s / 360, fill_mode="reflect", seed=seed, name="rotate"),
        "zoom": lambda: keras.layers.RandomZoom(0.1 * s, fill_mode="reflect", seed=seed, name="zoom"),
        "shift": lambda: keras.layers.RandomTranslation(0.1 * s, 0.1 * s, fill_mode="reflect", seed=seed, name="shift"),
        "contrast": lambda: keras.layers.RandomContrast(min(0.2 * s, 0.9), value_range=(0, 255), seed=seed, name="contrast"),
        "brightness": lambda: keras.layers.RandomBrightness(min(0.2 * s, 0.9), value_range=(0, 255), seed=seed, name="brightness"),
        "erase": lambda: keras.layers.RandomErasing(factor=min(0.5 * s, 1.0), scale=(0.02, 0.2), value_range=(0, 255), seed=seed, name="erase"),
    }
    return keras.Sequential([makers[n]() for n in names], name="augmentation")


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
    weights: np.ndarray | None = None,
    seed: int = 0,
) -> tf.data.Dataset:
    """A dataset of ``(faces float32 [B,H,W,1] in 0..255, {"logits": y, "probabilities": y}[, w])``.

    Args:
        faces: decoded faces.
        batch_size: batch size.
        training: shuffle and augment.
        soft_labels: use the faces' vote distributions instead of one-hot targets.
        augment: augmentation model applied to training batches.
        weights: per-class sample weights (see :func:`class_weights`).
        seed: shuffle seed.
    """
    targets = faces.soft if soft_labels else np.eye(faces.taxonomy.num_classes, dtype=np.float32)[faces.labels]
    tensors = [faces.images, targets]
    if weights is not None:
        tensors.append(weights[faces.labels])
    ds = tf.data.Dataset.from_tensor_slices(tuple(tensors)).cache()
    if training:
        ds = ds.shuffle(len(faces), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)

    def to_model(x, y, *w):
        x = tf.cast(x, tf.float32)
        if training and augment is not None:
            x = augment(x, training=True)
        return (x, {"logits": y, "probabilities": y}, *w)

    return ds.map(to_model, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
