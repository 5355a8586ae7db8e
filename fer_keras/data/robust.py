"""The ``robust`` training augmentation, vectorised over a batch.

:func:`fer_keras.data.shifts.robust_face` defines the augmentation one face at
a time (framing, tilt, light, camera faults, occluders) and stays its
reference. Called per face it spends most of its time in Python and in small
OpenCV calls that hold the interpreter, so a 16-core accelerator machine fed
only about 1,700 faces/s (issue 25). :func:`robust_augment` draws the same
random parameters from the same distributions for a whole batch at once and
applies each change to every face that drew it in a few NumPy operations:

* the reframing (scale, off-centre, box ratio, tilt) is one bilinear
  ``cv2.remap`` of all faces stacked in one image, whose second channel (ones
  over each face) gives the "where the old crop lands" mask of the same call;
* every Gaussian blur, the camera's down-and-up resampling and the clutter
  background's cubic upsampling are separable linear maps, applied as
  ``K @ face @ K.T`` with ``K`` built per face (the same kernel sizes and
  reflected borders as OpenCV);
* occluders are drawn as ellipses in closed form on the pixel grid;
* only JPEG compression (and upsampling above the crop's size, which the
  training ranges, 16-48 px, never draw for 48 or 64 px faces) stays a
  per-face OpenCV call.

The order of the four camera faults stays random per face, as in the
reference. A test compares the two on fixed seeds (framing, brightness, blur,
occluders); ``benchmarks/robust_feed.py`` prints both speeds side by side.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from fer_keras.data.shifts import jpeg, resample

KEEP_CLEAN = 0.2  # share of faces left as they are, as robust_face


# ---- linear maps on one axis of an [S, S] face ----------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _reflect_onehot(size: int, radius: int) -> np.ndarray:
    """``[2 * radius + 1, size, size]``: tap ``t`` of output row ``i`` reads row ``j`` (OpenCV's
    default BORDER_REFLECT_101)."""
    onehot = np.zeros((2 * radius + 1, size, size), np.float32)
    for t in range(-radius, radius + 1):
        for i in range(size):
            j = i + t
            while j < 0 or j >= size:
                j = -j if j < 0 else 2 * (size - 1) - j
            onehot[t + radius, i, j] += 1.0
    return onehot


def gaussian_matrices(sigmas: np.ndarray, size: int, *, uint8: bool) -> np.ndarray:
    """``[n, size, size]`` Gaussian blur matrices, one per sigma, with the kernel size OpenCV's
    ``GaussianBlur(..., (0, 0), sigma)`` picks for uint8 (3 sigma) or float (4 sigma) images."""
    sigmas = np.asarray(sigmas, np.float64)
    half = (np.rint(sigmas * (6 if uint8 else 8) + 1).astype(int) | 1) // 2
    radius = int(half.max(initial=0))
    taps = np.arange(-radius, radius + 1)
    weights = np.exp(-(taps[None, :] ** 2) / (2 * sigmas[:, None] ** 2)) * (np.abs(taps)[None, :] <= half[:, None])
    weights /= weights.sum(axis=1, keepdims=True)
    return (weights.astype(np.float32) @ _reflect_onehot(size, radius).reshape(2 * radius + 1, -1)).reshape(
        len(sigmas), size, size)


@functools.lru_cache(maxsize=256)
def resize_matrix(src: int, dst: int, interpolation: int) -> np.ndarray:
    """``[dst, src]``: OpenCV's resize along one axis as a matrix (resizing is linear and separable)."""
    return cv2.resize(np.eye(src, dtype=np.float32), (src, dst), interpolation=interpolation)


def _separable(matrices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``K @ face @ K.T`` for each face (``matrices`` ``[n, S', S]`` or one ``[S', S]``)."""
    return np.matmul(np.matmul(matrices, faces), np.swapaxes(matrices, -1, -2))


def _to_uint8_values(x: np.ndarray, *, rounded: bool) -> np.ndarray:
    """Float faces as a uint8 image would hold them: clipped, and rounded (OpenCV's filters) or
    truncated (``astype(np.uint8)`` in the reference)."""
    return np.clip(np.rint(x) if rounded else np.floor(x), 0, 255)


# ---- the changes, each on a float32 [n, S, S] stack holding uint8 values ---------------------------------

def _backgrounds(levels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """As :func:`fer_keras.data.shifts.background`: flat, a gradient or smooth clutter per face."""
    n = len(levels)
    kind = rng.integers(3, size=n)
    bg = np.repeat(levels[:, None, None], size, axis=1).repeat(size, axis=2).astype(np.float32)
    ramp = np.linspace(-1, 1, size, dtype=np.float32)
    grad = kind == 1
    if grad.any():
        angle = rng.uniform(0, 2 * np.pi, grad.sum())
        amp = rng.uniform(10, 60, grad.sum())
        bg[grad] += amp[:, None, None] * (np.cos(angle)[:, None, None] * ramp[None, None, :]
                                          + np.sin(angle)[:, None, None] * ramp[None, :, None])
    clutter = np.nonzero(kind == 2)[0]
    if len(clutter):
        cells = rng.integers(3, 9, size=len(clutter))
        spread = rng.uniform(15, 50, len(clutter))
        for c in np.unique(cells):
            rows = clutter[cells == c]
            coarse = rng.normal(0, 1, (len(rows), c, c)) * spread[cells == c][:, None, None] + levels[rows, None, None]
            bg[rows] = _separable(resize_matrix(int(c), size, cv2.INTER_CUBIC), coarse.astype(np.float32))
    bg += rng.standard_normal(bg.shape, np.float32) * rng.uniform(0, 6, n).astype(np.float32)[:, None, None]
    return np.clip(bg, 0, 255)


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's x and y, ``[1, size * size]`` float32."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return x.reshape(1, -1), y.reshape(1, -1)


def _reframe(faces: np.ndarray, rng: np.random.Generator, scale, dx, dy, aspect, angle) -> np.ndarray:
    """As :func:`fer_keras.data.shifts.reframe` for each face with its own parameters."""
    n, s, _ = faces.shape
    c = (s - 1) / 2
    sx, sy = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    a = np.deg2rad(angle)
    cos, sin = np.cos(a), np.sin(a)
    # destination = m @ source + offset, m = rotation @ diag(sx, sy) as cv2.getRotationMatrix2D((0, 0), angle, 1):
    # m = [[cos sx, sin sy], [-sin sx, cos sy]], whose inverse is [[cos / sx, -sin / sx], [sin / sy, cos / sy]].
    ox = c + dx * s - (cos * sx + sin * sy) * c
    oy = c + dy * s - (cos * sy - sin * sx) * c
    # Each face sits in a stack padded by two zero pixels, so its pixel (0, 0) is at (2, 2 + row offset).
    pad = 2
    w = s + 2 * pad
    chunk = 30000 // w  # remap keeps coordinates in 16 bits: stacks of under 32,767 rows
    rows_offset = (np.arange(n) % chunk) * w
    kx, ky = cos / sx, -sin / sx
    lx, ly = sin / sy, cos / sy
    gx, gy = _grid(s)

    def col(v):
        return np.asarray(v, np.float32)[:, None]

    u = col(kx) * gx
    u += col(ky) * gy
    u += col(pad - kx * ox - ky * oy)
    v = col(lx) * gx
    v += col(ly) * gy
    v += col(pad - lx * ox - ly * oy)
    # Beyond one pixel outside the face every sample is zero: clipping there reads the zero padding.
    np.clip(u, pad - 1, s + pad, out=u)
    np.clip(v, pad - 1, s + pad, out=v)
    v += col(rows_offset)
    # Channel 0 the face, channel 1 ones over it: the remap of the second is where the old crop lands.
    stacked = np.zeros((n, w, w, 2), np.float32)
    stacked[:, pad:pad + s, pad:pad + s, 0] = faces
    stacked[:, pad:pad + s, pad:pad + s, 1] = 1.0
    stacked = stacked.reshape(n * w, w, 2)
    both = np.empty((n, s * s, 2), np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        both[lo:hi] = cv2.remap(stacked[lo * w:hi * w], u[lo:hi].reshape(-1, s), v[lo:hi].reshape(-1, s),
                                cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT).reshape(hi - lo, s * s, 2)
    warped, inside = both[..., 0].reshape(n, s, s), both[..., 1].reshape(n, s, s)
    out = _to_uint8_values(warped, rounded=False)
    seamed = inside.reshape(n, -1).min(axis=1) < 0.999
    if seamed.any():
        rows = np.nonzero(seamed)[0]
        m = len(rows)
        # cv2.erode with a 5x5 square (image borders do not erode): faces stacked with two rows of ones
        # between them, then a soft edge.
        column = np.ones((m, s + 4, s), np.float32)
        column[:, 2:-2] = inside[rows]
        mask = cv2.erode(column.reshape(-1, s), np.ones((5, 5), np.uint8)).reshape(m, s + 4, s)[:, 2:-2]
        mask = _separable(gaussian_matrices(np.array([max(0.6, s / 20)]), s, uint8=False)[0], mask)
        edge = np.concatenate([faces[rows, 0], faces[rows, -1], faces[rows, :, 0], faces[rows, :, -1]], axis=1)
        levels = np.clip(rng.normal(edge.mean(axis=1), 25), 10, 245)
        bg = _backgrounds(levels, s, rng)
        out[rows] = _to_uint8_values(mask * warped[rows] + (1 - mask) * bg, rounded=False)
    return out


def _tone(faces: np.ndarray, brightness, contrast, gamma) -> np.ndarray:
    mean = faces.mean(axis=(1, 2), keepdims=True)
    x = np.clip((faces - mean) * contrast[:, None, None] + mean + brightness[:, None, None], 0, 255)
    x = 255.0 * (x / 255.0) ** gamma[:, None, None]
    return _to_uint8_values(x, rounded=False)


def _blur(faces: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    return _to_uint8_values(_separable(gaussian_matrices(sigmas, faces.shape[1], uint8=True), faces), rounded=True)


def _resample(faces: np.ndarray, sides: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As :func:`fer_keras.data.shifts.resample`: area-averaged down to ``side``, bilinear back up."""
    s = faces.shape[1]
    out = faces.copy()
    for side in np.unique(sides):
        rows = np.nonzero(sides == side)[0]
        if side > s:  # a sharp, grainy upsampled face: per face, as the reference
            for r in rows:
                out[r] = resample(faces[r].astype(np.uint8), int(side), rng)
        elif side < s:
            small = _to_uint8_values(_separable(resize_matrix(s, int(side), cv2.INTER_AREA), faces[rows]), rounded=True)
            out[rows] = _to_uint8_values(_separable(resize_matrix(int(side), s, cv2.INTER_LINEAR), small), rounded=True)
    return out


def _jpeg(faces: np.ndarray, qualities: np.ndarray) -> np.ndarray:
    return np.stack([jpeg(f.astype(np.uint8), q) for f, q in zip(faces, qualities)]).astype(np.float32)


def _noise(faces: np.ndarray, sigmas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = faces + rng.standard_normal(faces.shape, np.float32) * sigmas[:, None, None].astype(np.float32)
    return _to_uint8_values(noisy, rounded=False)


def _ellipses(s: int, cx, cy, rx, ry, angle_deg) -> np.ndarray:
    """``[n, S, S]`` filled ellipses (centres and half-axes in whole pixels, as cv2.ellipse takes them)."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float32)
    a = np.deg2rad(np.asarray(angle_deg, np.float32))[:, None, None]
    ddx, ddy = x[None] - np.asarray(cx)[:, None, None], y[None] - np.asarray(cy)[:, None, None]
    along = ddx * np.cos(a) + ddy * np.sin(a)
    across = -ddx * np.sin(a) + ddy * np.cos(a)
    rx, ry = np.asarray(rx, np.float32)[:, None, None], np.asarray(ry, np.float32)[:, None, None]
    return ((along / (rx + 0.5)) ** 2 + (across / (ry + 0.5)) ** 2 <= 1).astype(np.float32)


def _blend(faces: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    return _to_uint8_values(mask * fill + (1 - mask) * faces, rounded=False)


def _hands(faces: np.ndarray, areas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As :func:`fer_keras.data.shifts.occlude_hand` per face."""
    n, s, _ = faces.shape
    ry = np.sqrt(areas * s * s / np.pi / 0.8)
    rx = 0.8 * ry
    cx, cy = s * rng.uniform(0.3, 0.7, n), s * rng.uniform(0.62, 0.85, n)
    mask = _ellipses(s, cx.astype(int), cy.astype(int), np.maximum(1, rx.astype(int)), np.maximum(1, ry.astype(int)),
                     rng.uniform(-40, 40, n))
    mask = _separable(gaussian_matrices(np.array([max(0.5, s / 64)]), s, uint8=False)[0], mask)
    skin = np.clip(np.percentile(faces.reshape(n, -1), 75, axis=1) + rng.uniform(-10, 30, n), 30, 250)
    shade = np.linspace(-18, 18, s, dtype=np.float32)[None, None, :] * rng.choice([-1, 1], n)[:, None, None]
    fill = skin[:, None, None] + shade + 3 * rng.standard_normal(faces.shape, np.float32)
    return _blend(faces, mask, fill)


def _glasses(faces: np.ndarray, thickness: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As :func:`fer_keras.data.shifts.occlude_glasses` per face."""
    n, s, _ = faces.shape
    y = (s * rng.uniform(0.36, 0.44, n)).astype(int)
    h = thickness * s
    w = h * 1.35
    half_w, half_h = np.maximum(1, (w / 2).astype(int)), np.maximum(1, (h / 2).astype(int))
    mask = np.zeros(faces.shape, np.float32)
    for cx in (int(0.31 * s), int(0.69 * s)):
        mask = np.maximum(mask, _ellipses(s, np.full(n, cx), y, half_w, half_h, np.zeros(n)))
    line = max(1, s // 32)
    rows = np.arange(s)[None, :, None]
    top = (y - line // 2)[:, None, None]
    bridge = (rows >= top) & (rows < top + line) & (np.arange(s)[None, None, :] >= int(0.31 * s)) \
        & (np.arange(s)[None, None, :] <= int(0.69 * s))
    mask = np.maximum(mask, bridge.astype(np.float32))
    mask = _separable(gaussian_matrices(np.array([0.6]), s, uint8=False)[0], mask)
    fill = rng.uniform(5, 40, n).astype(np.float32)[:, None, None]
    return _blend(faces, mask * rng.uniform(0.85, 1.0, n).astype(np.float32)[:, None, None], fill)


# ---- the augmentation -----------------------------------------------------------------------------------

def robust_augment(images: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """The robust augmentation of a ``[B, S, S, 1]`` batch (any real dtype in 0..255), as float32.

    The same distribution as :func:`fer_keras.data.shifts.robust_face` applied to each face
    (its docstring lists the ranges): about one face in five is left as it is.
    """
    faces = np.clip(np.asarray(images, np.float32), 0, 255)
    out = np.floor(faces[..., 0])  # as the reference's cast to uint8
    n, s = out.shape[:2]
    k = float(strength)
    live = rng.random(n) >= KEEP_CLEAN
    if k <= 0 or not live.any():
        return out[..., None]

    def chance(p):
        return (rng.random(n) < min(1.0, p * k)) & live

    scale = np.where(chance(0.7), np.exp(rng.uniform(np.log(0.5), np.log(1.45), n)), 1.0)
    scale = 1.0 + (scale - 1.0) * min(k, 1.0)
    shift = np.where(chance(0.6)[:, None], rng.uniform(-0.12, 0.12, (n, 2)) * k, 0.0)
    aspect = np.where(chance(0.4), np.exp(rng.uniform(-np.log(1.4), np.log(1.4), n) * min(k, 1.0)), 1.0)
    angle = np.where(chance(0.5), rng.uniform(-20, 20, n) * min(k, 1.0), 0.0)
    moved = live & ((scale != 1) | (shift != 0).any(axis=1) | (aspect != 1) | (angle != 0))
    if moved.any():
        out[moved] = _reframe(out[moved], rng, scale[moved], shift[moved, 0], shift[moved, 1], aspect[moved],
                              angle[moved])

    toned = chance(0.4)
    if toned.any():
        m = int(toned.sum())
        out[toned] = _tone(out[toned], rng.uniform(-60, 60, m), rng.uniform(0.4, 1.3, m),
                           np.exp(rng.uniform(np.log(0.5), np.log(2.0), m)))

    # The four camera faults, each with its chance, in an order drawn per face.
    order = rng.permuted(np.tile(np.arange(4), (n, 1)), axis=1)
    fired = (rng.random((n, 4)) < min(1.0, 0.2 * k)) & live[:, None]
    for step in range(4):
        for fault in range(4):
            rows = np.nonzero(fired[:, fault] & (order[:, step] == fault))[0]
            if not len(rows):
                continue
            m = len(rows)
            if fault == 0:
                out[rows] = _blur(out[rows], rng.uniform(0.3, 2.0, m))
            elif fault == 1:
                out[rows] = _resample(out[rows], rng.integers(16, 49, m), rng)
            elif fault == 2:
                out[rows] = _jpeg(out[rows], rng.uniform(8, 80, m))
            else:
                out[rows] = _noise(out[rows], rng.uniform(2, 15, m), rng)

    covered = chance(0.15)
    hand = covered & (rng.random(n) < 0.5)
    glasses = covered & ~hand
    if hand.any():
        out[hand] = _hands(out[hand], rng.uniform(0.05, 0.22, int(hand.sum())), rng)
    if glasses.any():
        out[glasses] = _glasses(out[glasses], rng.uniform(0.09, 0.2, int(glasses.sum())), rng)
    return out[..., None]


__all__ = ["robust_augment", "gaussian_matrices", "resize_matrix"]
