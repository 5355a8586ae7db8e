"""An embedded synthetic face dataset the project draws itself.

Each face is a drawn head whose expression differs in mouth, brows and eyes
(the cues people read emotions from), under random pose, scale, lighting and
noise. It needs no download, so it is the default data of the training
command and the fixture of the tests. It is learnable well above chance in a
minute of CPU training, and far easier than real faces: accuracy on it says
nothing about accuracy on people.

``python -m fer_keras.data.synthetic --out DIR`` writes it as class folders.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_keras.data.records import Record
from fer_keras.data.taxonomy import SIX, Taxonomy

CANVAS = 128  # drawn at twice the usual size, then downsampled (anti-aliasing)


@dataclass(frozen=True)
class Expression:
    eye_open: float         # eye half-height
    brow_inner: float       # brow inner-end height above the eye (larger = higher)
    brow_outer: float       # brow outer-end height above the eye
    mouth: str              # "smile", "open", "frown", "tight", "sneer", "stretch", "flat"
    wrinkles: bool = False  # nose wrinkles (disgust)


EXPRESSIONS = {
    "happiness": Expression(4.5, 12, 12, "smile"),
    "surprise": Expression(8.0, 20, 20, "open"),
    "sadness": Expression(4.0, 17, 8, "frown"),
    "anger": Expression(2.0, 5, 14, "tight"),
    "disgust": Expression(2.5, 8, 12, "sneer", wrinkles=True),
    "fear": Expression(7.5, 18, 14, "stretch"),
    "neutral": Expression(4.5, 12, 12, "flat"),
}


def _jit(rng: np.random.Generator, value: float, spread: float) -> float:
    return value + rng.uniform(-spread, spread)


def draw_face(emotion: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Draws one grayscale ``size`` x ``size`` uint8 face showing ``emotion``."""
    e = EXPRESSIONS[emotion]
    img = np.full((CANVAS, CANVAS), rng.uniform(40, 200), np.float32)
    skin = rng.uniform(120, 230)
    dark = rng.uniform(10, 60)
    cx, cy = 64, 64
    cv2.ellipse(img, (cx, cy), (int(_jit(rng, 42, 4)), int(_jit(rng, 54, 4))), 0, 0, 360, skin, -1)
    # Eyes and brows, mirrored.
    eye_y = int(_jit(rng, 54, 2))
    eye_dx = _jit(rng, 17, 2)
    for side in (-1, 1):
        ex = int(cx + side * eye_dx)
        h = max(1, int(round(_jit(rng, e.eye_open, 1.0))))
        cv2.ellipse(img, (ex, eye_y), (8, h), 0, 0, 360, dark, -1)
        inner = (int(cx + side * (eye_dx - 8)), int(eye_y - _jit(rng, e.brow_inner, 1.5) - 4))
        outer = (int(cx + side * (eye_dx + 10)), int(eye_y - _jit(rng, e.brow_outer, 1.5) - 4))
        cv2.line(img, inner, outer, dark, int(rng.integers(3, 5)))
    # Nose.
    cv2.line(img, (cx, eye_y + 6), (cx - 3, eye_y + 22), dark * 0.5 + skin * 0.5, 2)
    if e.wrinkles:
        for k in (-1, 1):
            cv2.line(img, (cx + k * 4, eye_y + 8), (cx + k * 10, eye_y + 14), dark, 2)
    # Mouth.
    my = int(_jit(rng, 92, 3))
    w = int(_jit(rng, 16, 3))
    t = int(rng.integers(2, 4))
    if e.mouth == "smile":
        cv2.ellipse(img, (cx, my - 6), (w, int(_jit(rng, 10, 2))), 0, 10, 170, dark, t)
    elif e.mouth == "frown":
        cv2.ellipse(img, (cx, my + 6), (w, int(_jit(rng, 8, 2))), 0, 190, 350, dark, t)
    elif e.mouth == "open":
        cv2.ellipse(img, (cx, my), (int(_jit(rng, 9, 2)), int(_jit(rng, 13, 2))), 0, 0, 360, dark, -1)
    elif e.mouth == "stretch":
        cv2.ellipse(img, (cx, my), (w + 4, int(_jit(rng, 5, 1.5))), 0, 0, 360, dark, -1)
    elif e.mouth == "tight":
        cv2.line(img, (cx - w + 4, my), (cx + w - 4, my), dark, t + 2)
    elif e.mouth == "sneer":
        pts = np.array([[cx - w, my + 3], [cx - w // 3, my - 2], [cx + w // 3, my + 2], [cx + w, my - 6]], np.int32)
        cv2.polylines(img, [pts], False, dark, t)
    else:  # flat
        cv2.line(img, (cx - w, my), (cx + w, my), dark, t)
    # Pose: rotation, scale, translation.
    m = cv2.getRotationMatrix2D((cx, cy), rng.uniform(-15, 15), rng.uniform(0.8, 1.1))
    m[:, 2] += rng.uniform(-10, 10, size=2)
    img = cv2.warpAffine(img, m, (CANVAS, CANVAS), borderMode=cv2.BORDER_REPLICATE)
    # Lighting: a linear gradient and a contrast change; then sensor noise.
    gx, gy = rng.uniform(-0.5, 0.5, size=2)
    yy, xx = np.mgrid[-1:1:CANVAS * 1j, -1:1:CANVAS * 1j]
    img = (img - 128) * rng.uniform(0.6, 1.2) + 128 + 40 * (gx * xx + gy * yy)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img += rng.normal(0, rng.uniform(2, 10), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_records(
    per_class: int = 200,
    taxonomy: Taxonomy = SIX,
    size: int = 64,
    seed: int = 0,
    splits: tuple[tuple[str, float], ...] = (("train", 0.7), ("val", 0.15), ("test", 0.15)),
) -> list[Record]:
    """``per_class`` faces per emotion of ``taxonomy``, divided over ``splits``."""
    rng = np.random.default_rng(seed)
    records = []
    bounds = np.cumsum([fraction for _, fraction in splits])
    for emotion in taxonomy.classes:
        for i in range(per_class):
            split = splits[int(np.searchsorted(bounds, (i + 0.5) / per_class))][0]
            records.append(Record(
                source="synthetic", split=split, emotion=emotion,
                pixels=draw_face(emotion, rng, size), ref=f"synthetic:{emotion}:{i}",
            ))
    return records


def write_class_folders(out: Path, records: list[Record]) -> None:
    """Writes records as ``out/<split>/<emotion>/<n>.png``."""
    for n, r in enumerate(records):
        folder = out / (r.split or "all") / r.emotion
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{n:06d}.png"), r.pixels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic face dataset as class folders.")
    parser.add_argument("--out", type=Path, required=True, help="output folder (gets train/, val/, test/)")
    parser.add_argument("--per-class", type=int, default=200, help="faces per emotion (default 200)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    records = synthetic_records(args.per_class, size=args.size, seed=args.seed)
    write_class_folders(args.out, records)
    print(f"wrote {len(records)} faces under {args.out}")


if __name__ == "__main__":
    main()
