"""Per-face random augmentation as Keras layers, on any Keras backend.

Kept apart from the tf.data pipeline so that training on machines without
TensorFlow (``fer_keras.portable`` on JAX or PyTorch) uses the very same
layers and strengths.
"""

from __future__ import annotations

import keras

MIXES = ("mixup", "cutmix")
# Applied per face in NumPy/OpenCV by the tf.data pipeline (fer_keras.data.robust.robust_augment), not a layer.
NUMPY_AUGMENTATIONS = ("robust",)
AUGMENTATIONS = ("flip", "rotate", "zoom", "shift", "contrast", "brightness", "erase") + MIXES + NUMPY_AUGMENTATIONS
MIX_ALPHA = {"mixup": 0.2, "cutmix": 1.0}  # Beta(alpha, alpha) at strength 1, the values of the two papers


def augmentation(
    names: tuple[str, ...] = ("flip",), strength: float = 1.0, seed: int | None = None
) -> keras.Sequential | None:
    """Keras random layers for ``names`` (see ``AUGMENTATIONS``), scaled by ``strength``.

    At strength 1: rotation +-10 degrees, zoom and shift 10 %, contrast and
    brightness 20 %, erasing of 2-20 % of the face. Mixing names (``MIXES``)
    are left to :func:`mixer`, ``robust`` to the tf.data pipeline. Returns None
    when no per-face layer name is given.
    """
    check_names(names)
    names = tuple(n for n in names if n not in MIXES + NUMPY_AUGMENTATIONS)
    if not names:
        return None
    s = float(strength)
    makers = {
        "flip": lambda: keras.layers.RandomFlip("horizontal", seed=seed, name="flip"),
        "rotate": lambda: keras.layers.RandomRotation(10 * s / 360, fill_mode="reflect", seed=seed, name="rotate"),
        "zoom": lambda: keras.layers.RandomZoom(0.1 * s, fill_mode="reflect", seed=seed, name="zoom"),
        "shift": lambda: keras.layers.RandomTranslation(0.1 * s, 0.1 * s, fill_mode="reflect", seed=seed, name="shift"),
        "contrast": lambda: keras.layers.RandomContrast(
            min(0.2 * s, 0.9), value_range=(0, 255), seed=seed, name="contrast"
        ),
        "brightness": lambda: keras.layers.RandomBrightness(
            min(0.2 * s, 0.9), value_range=(0, 255), seed=seed, name="brightness"
        ),
        "erase": lambda: keras.layers.RandomErasing(
            factor=min(0.5 * s, 1.0), scale=(0.02, 0.2), value_range=(0, 255), seed=seed, name="erase"
        ),
    }
    return keras.Sequential([makers[n]() for n in names], name="augmentation")


def check_names(names: tuple[str, ...]) -> None:
    unknown = set(names) - set(AUGMENTATIONS)
    if unknown:
        raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; choose from: {', '.join(AUGMENTATIONS)}")
