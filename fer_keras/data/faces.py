"""Decoding records into arrays, once, with every bad file skipped and counted.

Files are decoded and checked up front (in threads: OpenCV releases the GIL),
so the training pipeline never meets an unreadable image halfway through an
epoch, and the same pass computes the content hashes the integrity report
needs.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np
from tqdm import tqdm

from fer_keras.data.records import Record
from fer_keras.data.taxonomy import Taxonomy

# Pixel standard deviation under which a face counts as nearly blank.
BLANK_STD = 2.0
_JPEG_EOI = b"\xff\xd9"


@dataclass
class FaceSet:
    """Decoded faces of one split, as aligned arrays.

    Attributes:
        images: uint8 ``[N, size, size, 1]`` grayscale faces.
        labels: int32 ``[N]`` class indices in ``taxonomy``.
        soft: float32 ``[N, K]`` target distributions (one-hot, or annotator votes).
        sources, subsets, names: per-face provenance (``names`` are paths or refs).
        digests: per-face hash of the decoded pixels at native size.
        blank: bool ``[N]``, nearly blank faces (kept, but flagged).
    """

    taxonomy: Taxonomy
    images: np.ndarray
    labels: np.ndarray
    soft: np.ndarray
    sources: np.ndarray
    subsets: np.ndarray
    names: np.ndarray
    digests: np.ndarray
    blank: np.ndarray
    groups: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def select(self, mask: np.ndarray) -> "FaceSet":
        """The faces where ``mask`` is True (a boolean or index array)."""
        return FaceSet(
            self.taxonomy, self.images[mask], self.labels[mask], self.soft[mask], self.sources[mask],
            self.subsets[mask], self.names[mask], self.digests[mask], self.blank[mask], self.groups[mask],
        )

    @staticmethod
    def concatenate(sets: list["FaceSet"]) -> "FaceSet":
        if not sets:
            raise ValueError("nothing to concatenate")
        cat = lambda attr: np.concatenate([getattr(s, attr) for s in sets])  # noqa: E731
        return FaceSet(sets[0].taxonomy, *(cat(a) for a in (
            "images", "labels", "soft", "sources", "subsets", "names", "digests", "blank", "groups")))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=self.taxonomy.num_classes)
        return {c: int(n) for c, n in zip(self.taxonomy.classes, counts)}


def decode_gray(data: bytes | np.ndarray) -> np.ndarray | None:
    """Decodes image bytes (any format OpenCV reads, 8 or 16 bit, palette or
    alpha) to a 2-D uint8 grayscale array; None when they are not a whole image."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    if buf.size == 0:
        return None
    if buf[:2].tobytes() == b"\xff\xd8" and _JPEG_EOI not in buf[-64:].tobytes():
        return None  # truncated JPEG: OpenCV would return a half-grey picture
    image = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if image is None or image.ndim != 2 or min(image.shape) < 1:
        return None
    return image


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    if image.shape == (size, size):
        return image
    shrinking = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _load_one(record: Record, size: int):
    if record.pixels is not None:
        gray = record.pixels if record.pixels.ndim == 2 else cv2.cvtColor(record.pixels, cv2.COLOR_RGB2GRAY)
    else:
        try:
            with open(record.path, "rb") as fh:
                data = fh.read()
        except OSError:
            return None
        gray = decode_gray(data)
    if gray is None:
        return None
    digest = hashlib.sha1(np.ascontiguousarray(gray).tobytes() + str(gray.shape).encode()).hexdigest()
    return _resize(gray, size), digest, float(gray.std()) < BLANK_STD


def soft_target(record: Record, taxonomy: Taxonomy, label: int) -> np.ndarray:
    """The record's vote distribution over ``taxonomy`` (one-hot without votes)."""
    target = np.zeros(taxonomy.num_classes, np.float32)
    if record.votes:
        for emotion, count in record.votes.items():
            i = taxonomy.index(emotion)
            if i is not None:
                target[i] = count
    if target.sum() <= 0:
        target[:] = 0
        target[label] = 1
    return target / target.sum()


def load_faces(
    records: list[Record], taxonomy: Taxonomy, size: int, *, workers: int = 8, progress: bool = True,
    desc: str = "decoding",
) -> tuple[FaceSet, Counter, list[str]]:
    """Decodes ``records`` into a :class:`FaceSet`.

    Records whose emotion is outside ``taxonomy`` are dropped and counted;
    unreadable or corrupt images are skipped, counted and listed.

    Returns:
        (faces, dropped emotions -> count, names of unreadable images)
    """
    dropped: Counter = Counter()
    kept: list[tuple[Record, int]] = []
    for r in records:
        label = taxonomy.index(r.emotion)
        if label is None:
            dropped[r.emotion] += 1
        else:
            kept.append((r, label))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(tqdm(pool.map(lambda rl: _load_one(rl[0], size), kept), total=len(kept),
                            desc=desc, unit="img", disable=not progress, leave=False))
    good = [(r, label, res) for (r, label), res in zip(kept, results) if res is not None]
    corrupt = [r.name for (r, _), res in zip(kept, results) if res is None]
    n, k = len(good), taxonomy.num_classes
    faces = FaceSet(
        taxonomy=taxonomy,
        images=np.stack([res[0] for _, _, res in good])[..., None] if n else np.zeros((0, size, size, 1), np.uint8),
        labels=np.array([label for _, label, _ in good], np.int32),
        soft=np.stack([soft_target(r, taxonomy, label) for r, label, _ in good]) if n else np.zeros((0, k), np.float32),
        sources=np.array([r.source for r, _, _ in good], dtype=object),
        subsets=np.array([r.subset for r, _, _ in good], dtype=object),
        names=np.array([r.name for r, _, _ in good], dtype=object),
        digests=np.array([res[1] for _, _, res in good], dtype=object),
        blank=np.array([res[2] for _, _, res in good], dtype=bool),
        groups=np.array([r.group for r, _, _ in good], dtype=object),
    )
    return faces, dropped, corrupt


def as_uint8_faces(faces: np.ndarray) -> np.ndarray:
    """Faces as the uint8 0-255 grey levels the model takes, or ValueError saying what is wrong.

    uint8 passes as it is; other integers and floats must hold whole grey levels 0-255 (floats are
    rounded). Refused: booleans, complex or object arrays, NaN or infinity, values outside 0-255
    (which a cast would wrap: 300 becomes 44), and floats all within [0, 1], which are images scaled
    to [0, 1] and would come out nearly black.
    """
    faces = np.asarray(faces)
    if faces.dtype == np.uint8:
        return faces
    if faces.dtype.kind not in "iuf":
        raise ValueError(f"faces must be numbers (uint8 grey levels 0-255); got dtype {faces.dtype}")
    if faces.size == 0:
        return faces.astype(np.uint8)
    if faces.dtype.kind == "f" and not np.isfinite(faces).all():
        raise ValueError(f"faces hold {int((~np.isfinite(faces)).sum())} NaN or infinite values")
    low, high = faces.min(), faces.max()
    if low < 0 or high > 255:
        raise ValueError(f"faces must hold grey levels 0-255; got values from {low} to {high}")
    if faces.dtype.kind == "f" and high <= 1.0:
        raise ValueError("faces look scaled to [0, 1] (float, all values at most 1): multiply by 255 first")
    return np.rint(faces).astype(np.uint8) if faces.dtype.kind == "f" else faces.astype(np.uint8)
