"""Controlled shifts of face crops: the robustness suite and the robust augmentation.

A face crop from a dataset is rarely what a model meets in use: a detector
frames the face tighter or looser and off-centre, cameras blur, compress and
light it differently, heads tilt, hands and glasses cover parts of it. This
module makes those changes to uint8 ``[N, S, S, 1]`` faces in two ways that
share the same primitives:

* :data:`SHIFTS`: named shifts, each at severities 1 (mild) to 5 (strong),
  seeded per face, so every model in a robustness report sees the very same
  shifted faces (``fer_keras.robustness``);
* :func:`robust_face`: every shift at once, with random strengths drawn
  from continuous ranges, for training: the definition of the ``robust``
  augmentation, which trains through its batch-vectorised equivalent
  :func:`fer_keras.data.robust.robust_augment`.

Where a shift uncovers pixels the crop does not have (a looser frame, a
rotation), they are filled with a generated background (flat, a gradient or
smooth clutter) rather than mirrored face parts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

MAX_SEVERITY = 5


@dataclass(frozen=True)
class Shift:
    """One named shift: ``levels[s - 1]`` is its parameter at severity ``s``."""

    name: str
    group: str
    unit: str
    levels: tuple[float, ...]
    apply: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    help: str


# ---- primitives on one 2-D uint8 face ------------------------------------------------------------

def background(size: int, rng: np.random.Generator, level: float | None = None) -> np.ndarray:
    """A float32 ``[size, size]`` background: flat, a gradient, or smooth clutter, around ``level``."""
    level = float(rng.uniform(40, 200)) if level is None else level
    kind = rng.integers(3)
    if kind == 0:
        bg = np.full((size, size), level, np.float32)
    elif kind == 1:
        ramp = np.linspace(-1, 1, size, dtype=np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        bg = level + rng.uniform(10, 60) * (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])
    else:
        cells = int(rng.integers(3, 9))
        coarse = rng.normal(level, rng.uniform(15, 50), (cells, cells)).astype(np.float32)
        bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    bg = bg + rng.normal(0, rng.uniform(0, 6), (size, size)).astype(np.float32)
    return np.clip(bg, 0, 255)


def reframe(face: np.ndarray, rng: np.random.Generator, *, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0,
            aspect: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """The face as a crop framed differently.

    Args:
        face: ``[S, S]`` uint8.
        scale: the face's size in the new crop relative to the old (above 1: a
            tighter crop, below 1: a looser one showing generated background).
        dx, dy: the face moved by this share of the side (a box off-centre).
        aspect: a non-square box squeezed to a square: the face is stretched
            horizontally by ``sqrt(aspect)`` and vertically by ``1 / sqrt(aspect)``.
        angle: in-plane rotation in degrees.
    """
    s = face.shape[0]
    c = (s - 1) / 2
    sx, sy = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    rot = cv2.getRotationMatrix2D((0, 0), angle, 1.0)[:, :2]
    m = rot @ np.diag([sx, sy])
    offset = np.array([c + dx * s, c + dy * s]) - m @ np.array([c, c])
    matrix = np.hstack([m, offset[:, None]]).astype(np.float64)
    if scale == 1.0 and aspect == 1.0 and angle == 0.0 and dx == 0.0 and dy == 0.0:
        return face
    flags = cv2.INTER_AREA if max(sx, sy) < 1 else cv2.INTER_LINEAR
    warped = cv2.warpAffine(face.astype(np.float32), matrix, (s, s), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    # Where the old crop lands, with a soft edge so no straight seam is left.
    inside = cv2.warpAffine(np.ones((s, s), np.float32), matrix, (s, s), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
    if inside.min() >= 0.999:
        return np.clip(warped, 0, 255).astype(np.uint8)
    inside = cv2.GaussianBlur(cv2.erode(inside, np.ones((5, 5), np.uint8)), (0, 0), max(0.6, s / 20))
    edge = np.concatenate([face[0], face[-1], face[:, 0], face[:, -1]]).astype(np.float32)
    bg = background(s, rng, level=float(np.clip(rng.normal(edge.mean(), 25), 10, 245)))
    return np.clip(inside * warped + (1 - inside) * bg, 0, 255).astype(np.uint8)


def gaussian_blur(face: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(face, (0, 0), sigma) if sigma > 0 else face


def resample(face: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """The face as a camera at ``side`` pixels would give it to the model.

    Below the crop's size: detail lost (area-averaged down, bilinear back up).
    Above it: a sharp, grainy high-resolution face (upsampled, camera-sharpened,
    sensor grain) shrunk back by a plain bilinear resize, as many image
    libraries do by default, so fine detail aliases more the larger the source.
    """
    s = face.shape[0]
    side = int(round(side))
    if side == s:
        return face
    if side < s:
        small = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)
    big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    big = big + 0.8 * (big - cv2.GaussianBlur(big, (0, 0), side / 64))  # camera sharpening
    big += rng.normal(0, 6, big.shape).astype(np.float32)  # sensor grain
    return cv2.resize(np.clip(big, 0, 255).astype(np.uint8), (s, s), interpolation=cv2.INTER_LINEAR)


def jpeg(face: np.ndarray, quality: float) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, int(round(quality))])
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if ok else face


def add_noise(face: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(face + rng.normal(0, sigma, face.shape), 0, 255).astype(np.uint8)


def tone(face: np.ndarray, *, brightness: float = 0.0, contrast: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """Brightness offset (grey levels), contrast around the face's mean, then gamma."""
    x = face.astype(np.float32)
    x = (x - x.mean()) * contrast + x.mean() + brightness
    x = np.clip(x, 0, 255)
    if gamma != 1.0:
        x = 255.0 * (x / 255.0) ** gamma
    return np.clip(x, 0, 255).astype(np.uint8)


def _blend(face: np.ndarray, mask: np.ndarray, fill: np.ndarray) -> np.ndarray:
    return np.clip(mask * fill + (1 - mask) * face.astype(np.float32), 0, 255).astype(np.uint8)


def occlude_hand(face: np.ndarray, area: float, rng: np.random.Generator) -> np.ndarray:
    """A hand-like blob (skin-light, softly shaded) covering ``area`` of the crop over the mouth or a cheek."""
    s = face.shape[0]
    ry = np.sqrt(area * s * s / np.pi / 0.8)
    rx = 0.8 * ry
    cx = s * rng.uniform(0.3, 0.7)
    cy = s * rng.uniform(0.62, 0.85)
    mask = np.zeros((s, s), np.float32)
    cv2.ellipse(mask, (int(cx), int(cy)), (max(1, int(rx)), max(1, int(ry))), rng.uniform(-40, 40), 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, s / 64))
    skin = np.clip(np.percentile(face, 75) + rng.uniform(-10, 30), 30, 250)
    shade = np.linspace(-18, 18, s, dtype=np.float32)[None, :] * rng.choice([-1, 1])
    fill = skin + shade + rng.normal(0, 3, (s, s)).astype(np.float32)
    return _blend(face, mask, fill)


def occlude_glasses(face: np.ndarray, thickness: float, rng: np.random.Generator) -> np.ndarray:
    """Dark glasses: two lenses and a bridge at eye level, lens height ``thickness`` of the side."""
    s = face.shape[0]
    y = s * rng.uniform(0.36, 0.44)
    h = thickness * s
    w = h * 1.35
    mask = np.zeros((s, s), np.float32)
    for cx in (0.31 * s, 0.69 * s):
        cv2.ellipse(mask, (int(cx), int(y)), (max(1, int(w / 2)), max(1, int(h / 2))), 0, 0, 360, 1.0, -1)
    cv2.line(mask, (int(0.31 * s), int(y)), (int(0.69 * s), int(y)), 1.0, max(1, s // 32))
    mask = cv2.GaussianBlur(mask, (0, 0), 0.6)
    fill = np.full((s, s), rng.uniform(5, 40), np.float32)
    return _blend(face, mask * rng.uniform(0.85, 1.0), fill)


def _sign(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]))


def _offcentre(face, value, rng):
    angle = rng.uniform(0, 2 * np.pi)
    return reframe(face, rng, dx=value * np.cos(angle), dy=value * np.sin(angle))


def _aspect(face, value, rng):
    return reframe(face, rng, aspect=value if rng.random() < 0.5 else 1 / value)


SHIFTS: dict[str, Shift] = {s.name: s for s in (
    Shift("tight", "framing", "face scale", (1.1, 1.2, 1.3, 1.45, 1.6),
          lambda f, v, r: reframe(f, r, scale=v), "a tighter box: the face fills more of the crop"),
    Shift("loose", "framing", "face scale", (0.9, 0.8, 0.7, 0.6, 0.5),
          lambda f, v, r: reframe(f, r, scale=v), "a looser box: background around the face"),
    Shift("off-centre", "framing", "share of side", (0.05, 0.1, 0.15, 0.2, 0.25), _offcentre,
          "the box moved off the face's centre"),
    Shift("aspect", "framing", "box side ratio", (1.1, 1.2, 1.3, 1.45, 1.6), _aspect,
          "a non-square box squeezed to a square"),
    Shift("rotation", "geometry", "degrees", (4, 8, 12, 16, 20),
          lambda f, v, r: reframe(f, r, angle=v * _sign(r)), "in-plane head tilt"),
    Shift("low-resolution", "resolution", "pixels", (40, 32, 24, 20, 16),
          lambda f, v, r: resample(f, v, r), "the face seen at this many pixels, then upsampled"),
    Shift("high-resolution", "resolution", "pixels", (96, 128, 160, 208, 256),
          lambda f, v, r: resample(f, v, r),
          "a sharp, grainy face of this many pixels shrunk by a plain bilinear resize"),
    Shift("blur", "camera", "sigma (px)", (0.6, 1.0, 1.5, 2.0, 3.0),
          lambda f, v, r: gaussian_blur(f, v), "Gaussian blur (focus, motion)"),
    Shift("jpeg", "camera", "quality", (60, 40, 25, 15, 8),
          lambda f, v, r: jpeg(f, v), "JPEG compression"),
    Shift("noise", "camera", "sigma (grey levels)", (4, 8, 12, 18, 25),
          lambda f, v, r: add_noise(f, v, r), "sensor noise"),
    Shift("brightness", "light", "grey levels", (20, 40, 60, 80, 100),
          lambda f, v, r: tone(f, brightness=v * _sign(r)), "brighter or darker"),
    Shift("contrast", "light", "factor", (0.8, 0.65, 0.5, 0.4, 0.3),
          lambda f, v, r: tone(f, contrast=v), "flatter contrast"),
    Shift("gamma", "light", "gamma", (1.25, 1.5, 1.8, 2.2, 2.8),
          lambda f, v, r: tone(f, gamma=v if r.random() < 0.5 else 1 / v), "gamma (over- or under-exposure)"),
    Shift("occlusion-hand", "occlusion", "share covered", (0.06, 0.1, 0.14, 0.18, 0.24),
          lambda f, v, r: occlude_hand(f, v, r), "a hand over the mouth or a cheek"),
    Shift("occlusion-glasses", "occlusion", "lens height", (0.1, 0.13, 0.16, 0.19, 0.22),
          lambda f, v, r: occlude_glasses(f, v, r), "dark glasses"),
)}


def check_shift(name: str, severity: int | None = None) -> Shift:
    """The shift called ``name``; ValueError naming the choices, or the allowed severities."""
    if name not in SHIFTS:
        raise ValueError(f"unknown shift {name!r}; choose from: {', '.join(SHIFTS)}")
    if severity is not None and not (1 <= severity <= MAX_SEVERITY):
        raise ValueError(f"severity must be 1 to {MAX_SEVERITY}; got {severity}")
    return SHIFTS[name]


def face_rng(seed: int, name: str, severity: int, index: int) -> np.random.Generator:
    """The generator of one face under one shift and severity: the same for every model and run."""
    key = sum(ord(ch) * 31 ** i for i, ch in enumerate(name)) % (2 ** 31)
    return np.random.default_rng([seed, key, severity, index])


def apply_shift(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``images`` (uint8 ``[N, S, S, 1]``) under shift ``name`` at ``severity`` (1-5), seeded per face."""
    shift = check_shift(name, severity)
    value = shift.levels[severity - 1]
    out = np.empty_like(images)
    for i, face in enumerate(images):
        out[i, ..., 0] = shift.apply(face[..., 0], value, face_rng(seed, name, severity, i))
    return out


def mixed_shifts(images: np.ndarray, seed: int = 0, names: tuple[str, ...] | None = None) -> tuple[np.ndarray, list]:
    """Each face under one shift at one severity, both drawn per face (seeded): a
    validation set that covers the whole suite. Returns the faces and ``(name, severity)`` per face."""
    names = tuple(names or SHIFTS)
    rng = np.random.default_rng(seed)
    out = np.empty_like(images)
    chosen = []
    for i, face in enumerate(images):
        name = names[rng.integers(len(names))]
        severity = int(rng.integers(1, MAX_SEVERITY + 1))
        shift = SHIFTS[name]
        out[i, ..., 0] = shift.apply(face[..., 0], shift.levels[severity - 1], face_rng(seed, name, severity, i))
        chosen.append((name, severity))
    return out, chosen


# ---- training ----------------------------------------------------------------------------------

def robust_face(face: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """One 2-D uint8 face with random framing, tilt, light, camera faults and occluders.

    About one face in five is left as it is, so clean crops stay in the mix.
    Ranges at strength 1: face scale 0.5-1.45 (looser crops drawn more often,
    as detectors and whole-image datasets give), centre moved up to 12 % of the
    side, box ratio up to 1.4, tilt up to 20 degrees; brightness +-60, contrast
    0.4-1.3, gamma 0.5-2; blur sigma up to 2 px, resolution 16-48 px, JPEG
    quality 8-80, noise up to 15 grey levels (each of these four with
    probability 0.2), a hand or dark glasses (0.15).
    """
    if rng.random() < 0.2:
        return face
    k = float(strength)

    def chance(p):
        return rng.random() < min(1.0, p * k)

    scale = float(np.exp(rng.uniform(np.log(0.5), np.log(1.45)))) if chance(0.7) else 1.0
    scale = 1.0 + (scale - 1.0) * min(k, 1.0)
    dx, dy = (rng.uniform(-0.12, 0.12, 2) * k) if chance(0.6) else (0.0, 0.0)
    aspect = float(np.exp(rng.uniform(-np.log(1.4), np.log(1.4)) * min(k, 1.0))) if chance(0.4) else 1.0
    angle = float(rng.uniform(-20, 20) * min(k, 1.0)) if chance(0.5) else 0.0
    face = reframe(face, rng, scale=scale, dx=float(dx), dy=float(dy), aspect=aspect, angle=angle)
    if chance(0.4):
        face = tone(face, brightness=rng.uniform(-60, 60), contrast=rng.uniform(0.4, 1.3),
                    gamma=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))))
    degradations = [
        lambda f: gaussian_blur(f, rng.uniform(0.3, 2.0)),
        lambda f: resample(f, int(rng.integers(16, 49)), rng),
        lambda f: jpeg(f, rng.uniform(8, 80)),
        lambda f: add_noise(f, rng.uniform(2, 15), rng),
    ]
    for i in rng.permutation(len(degradations)):
        if chance(0.2):
            face = degradations[i](face)
    if chance(0.15):
        face = occlude_hand(face, rng.uniform(0.05, 0.22), rng) if rng.random() < 0.5 else \
            occlude_glasses(face, rng.uniform(0.09, 0.2), rng)
    return face


def robust_augment_per_face(images: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """:func:`robust_face` on each face of a ``[B, S, S, 1]`` batch (any real dtype in 0..255): the reference
    that :func:`fer_keras.data.robust.robust_augment` (the training feed) is compared and benchmarked against."""
    faces = np.clip(np.asarray(images), 0, 255).astype(np.uint8)
    out = np.empty(faces.shape, np.float32)
    for i, face in enumerate(faces):
        out[i, ..., 0] = robust_face(face[..., 0], rng, strength)
    return out


def with_shifted_copy(faces, seed: int):
    """A :class:`fer_keras.data.faces.FaceSet` followed by a copy of its faces, each under one shift of the
    suite at one severity (:func:`mixed_shifts`, seeded): checkpoints chosen on this favour models that
    hold up on detector crops and cameras, not only on clean crops."""
    from fer_keras.data.faces import FaceSet

    shifted = faces.select(np.arange(len(faces)))
    shifted.images, _ = mixed_shifts(faces.images, seed)
    shifted.subsets = np.array(["shifted"] * len(faces), dtype=object)
    return FaceSet.concatenate([faces, shifted])
