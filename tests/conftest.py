"""Shared fixtures: tiny synthetic data, image-file makers, and the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import fer_keras  # noqa: F401  (first: the package's TensorFlow environment defaults, as its commands have them)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FER_KERAS_SHARED_DATA", REPO.parent / "shared" / "data"))
FER2013 = SHARED_DATA / "fer2013"
FERPLUS = SHARED_DATA / "ferplus"

requires_fer2013 = pytest.mark.skipif(not (FER2013 / "train").is_dir(),
                                      reason=f"FER2013 not found at {FER2013} (set FER_KERAS_SHARED_DATA)")
requires_ferplus = pytest.mark.skipif(not (FERPLUS / "FER2013Test").is_dir(),
                                      reason=f"FER+ not found at {FERPLUS} (set FER_KERAS_SHARED_DATA)")


def write_image(path: Path, value: int | None = None, size: int = 48, seed: int = 0) -> Path:
    """Writes a small grayscale image (random texture, or flat ``value``) and returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if value is None:
        image = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    else:
        image = np.full((size, size), value, np.uint8)
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def image_writer():
    return write_image
