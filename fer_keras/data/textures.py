"""Textured, face-free backgrounds: what ordinary footage puts behind and around faces.

The project's first scenes pasted faces onto blurred noise, on which every
detector is quiet. Real rooms have walls, fabric, foliage and sensor noise,
and there detectors draw false faces (issue 28) and cut worse crops. These
generators make such backgrounds, seeded, as uint8 grayscale ``[H, W]``:

* ``noise-fine`` / ``noise-medium`` / ``noise-coarse``: random grey levels at
  a grain of 1-2, 4-8 or 16-32 pixels (sensor noise to blotchy plaster);
* ``fabric``: a woven pattern of crossing threads with folds of shading;
* ``brick``: courses of bricks of varied tone with mortar joints;
* ``foliage``: overlapping leaves of random size, tilt and tone.

:data:`TEXTURES` lists them; :func:`texture` makes one by name and
:func:`textured_background` picks one at random.
"""

from __future__ import annotations

import cv2
import numpy as np


def _normalise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stretch to a random mean level and contrast, as uint8."""
    x = (x - x.mean()) / (x.std() + 1e-6)
    level, spread = rng.uniform(70, 180), rng.uniform(20, 55)
    return np.clip(level + spread * x, 0, 255).astype(np.uint8)


def _noise(height: int, width: int, rng: np.random.Generator, grain: tuple[int, int]) -> np.ndarray:
    g = int(rng.integers(grain[0], grain[1] + 1))
    coarse = rng.normal(0, 1, (max(2, height // g + 2), max(2, width // g + 2))).astype(np.float32)
    x = cv2.resize(coarse, (width + 2 * g, height + 2 * g), interpolation=cv2.INTER_CUBIC)[g:g + height, g:g + width]
    return _normalise(x + 0.15 * rng.normal(0, 1, (height, width)).astype(np.float32), rng)


def _fabric(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
    period = rng.uniform(3, 9)
    weave = np.sin(2 * np.pi * u / period) * np.sign(np.sin(np.pi * v / period)) \
        + np.sin(2 * np.pi * v / period) * np.sign(np.sin(np.pi * u / period))
    folds = cv2.resize(rng.normal(0, 1, (4, 5)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return _normalise(weave + 1.5 * folds + 0.3 * rng.normal(0, 1, (height, width)).astype(np.float32), rng)


def _brick(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    course = int(rng.integers(14, 40))
    length = int(course * rng.uniform(1.8, 3.2))
    joint = max(1, course // 8)
    tones = rng.normal(0, 0.6, (height // course + 2, width // length + 3)).astype(np.float32)
    y, x = np.mgrid[0:height, 0:width]
    row = y // course
    shifted = x + (row % 2) * (length // 2)
    out = tones[row, shifted // length]
    mortar = ((y % course) < joint) | ((shifted % length) < joint)
    out = np.where(mortar, rng.choice([-1.8, 1.8]), out)
    out = out + 0.35 * rng.normal(0, 1, (height, width)).astype(np.float32)
    return _normalise(cv2.GaussianBlur(out.astype(np.float32), (0, 0), 0.7), rng)


def _foliage(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    out = np.full((height, width), rng.uniform(-1, 1), np.float32)
    size = rng.uniform(6, 24)
    for _ in range(int(height * width / size ** 2 * 1.5)):
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        a = max(2, int(size * rng.uniform(0.5, 1.3)))
        cv2.ellipse(out, (cx, cy), (a, max(1, int(a * rng.uniform(0.3, 0.55)))), float(rng.uniform(0, 180)), 0, 360,
                    float(rng.normal(0, 1)), -1)
    return _normalise(cv2.GaussianBlur(out, (0, 0), 0.8) + 0.2 * rng.normal(0, 1, (height, width)).astype(np.float32),
                      rng)


TEXTURES = {
    "noise-fine": lambda h, w, r: _noise(h, w, r, (1, 2)),
    "noise-medium": lambda h, w, r: _noise(h, w, r, (4, 8)),
    "noise-coarse": lambda h, w, r: _noise(h, w, r, (16, 32)),
    "fabric": _fabric,
    "brick": _brick,
    "foliage": _foliage,
}


def texture(name: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """The texture ``name`` (one of :data:`TEXTURES`) as uint8 ``[height, width]``."""
    if name not in TEXTURES:
        raise ValueError(f"unknown texture {name!r}; choose from: {', '.join(TEXTURES)}")
    return TEXTURES[name](height, width, rng)


def textured_background(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A texture of a kind drawn at random, and its name."""
    name = list(TEXTURES)[int(rng.integers(len(TEXTURES)))]
    return texture(name, height, width, rng), name


__all__ = ["TEXTURES", "texture", "textured_background"]
