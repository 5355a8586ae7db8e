"""Where a map puts its mass: the share on the eyes and brows, the nose and the mouth of each face.

The regions are drawn from three keypoints in the crop's pixels (both eyes and the mouth centre): in
the face's own frame (x along the line between the eyes, y down towards the mouth), with ``e`` the
distance between the eyes and ``d`` the distance from between the eyes to the mouth,

- **eyes** (eyes and brows): from ``0.35 e`` outside each eye, from ``0.45 d`` above the eye line to
  ``0.2 d`` below it;
- **nose**: ``0.3 e`` either side of the face's midline, from ``0.2 d`` below the eyes to ``0.2 d``
  above the mouth;
- **mouth**: ``0.55 e`` either side of the mouth centre, from ``0.2 d`` above it to ``0.3 d`` below;
- **elsewhere**: the rest (cheeks, forehead, chin, hair, background).

The three regions do not overlap. A detected face uses its detector's keypoints, followed into the
crop (``fer_keras.detection.keypoints_in_crop``); a dataset crop, which has none, uses
:data:`CANONICAL_KEYPOINTS`, the median BlazeFace keypoints of FER2013 training faces in their own
crops.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

REGIONS = ("eyes", "nose", "mouth")
# Median BlazeFace keypoints of 200 FER2013 training faces pasted at 200 and 120 px into scenes, in the
# FER crop's own coordinates (fractions of its side from the top-left):
#   python -m benchmarks.detectors --split train --detectors blazeface --faces 200 --sizes 200,120 \
#       --backgrounds blurred-noise
# gave left_eye (0.310, 0.405) / (0.300, 0.408), right_eye (0.680, 0.385) / (0.683, 0.392),
# mouth (0.505, 0.780) / (0.500, 0.775) at the two sizes.
CANONICAL_KEYPOINTS = {"left_eye": (0.305, 0.406), "right_eye": (0.682, 0.389), "mouth": (0.503, 0.778)}


def canonical_keypoints(size: int) -> dict[str, tuple[float, float]]:
    """:data:`CANONICAL_KEYPOINTS` in the pixels of a ``size`` x ``size`` crop (pixel centres at integers)."""
    return {k: (x * size - 0.5, y * size - 0.5) for k, (x, y) in CANONICAL_KEYPOINTS.items()}


def region_masks(keypoints: Mapping[str, Sequence[float]], size: int) -> dict[str, np.ndarray]:
    """Boolean ``[size, size]`` masks of :data:`REGIONS` from ``left_eye``, ``right_eye`` and ``mouth``
    (pixels of the crop); one clear error naming what is missing."""
    keypoints = dict(keypoints)
    if "mouth" not in keypoints and {"mouth_left", "mouth_right"} <= set(keypoints):  # MTCNN's mouth corners
        keypoints["mouth"] = tuple((np.asarray(keypoints["mouth_left"], float)
                                    + np.asarray(keypoints["mouth_right"], float)) / 2)
    missing = {"left_eye", "right_eye", "mouth"} - set(keypoints)
    if missing:
        raise ValueError(f"region masks need both eyes and the mouth; missing {sorted(missing)}")
    left, right, mouth = (np.asarray(keypoints[k], float) for k in ("left_eye", "right_eye", "mouth"))
    across = right - left
    e = float(np.hypot(*across))
    if e < 1e-6:
        raise ValueError("the two eye keypoints coincide")
    across /= e
    down = np.array([-across[1], across[0]])  # 90 degrees clockwise of "across" in image coordinates: downwards
    eyes = (left + right) / 2
    d = float((mouth - eyes) @ down)
    if d <= 0:
        raise ValueError("the mouth keypoint is not below the eyes")
    ys, xs = np.mgrid[0:size, 0:size].astype(float)
    offset = np.stack([xs - eyes[0], ys - eyes[1]], -1)
    u, v = offset @ across, offset @ down  # along the eye line from between the eyes; down from the eye line
    mouth_u = float((mouth - eyes) @ across)
    return {
        "eyes": (np.abs(u) <= 0.5 * e + 0.35 * e) & (v >= -0.45 * d) & (v < 0.2 * d),
        "nose": (np.abs(u - mouth_u * v / d) <= 0.3 * e) & (v >= 0.2 * d) & (v < 0.8 * d),
        "mouth": (np.abs(u - mouth_u) <= 0.55 * e) & (v >= 0.8 * d) & (v <= 1.3 * d),
    }


def face_regions(keypoints: Mapping[str, Sequence[float]] | None, size: int) -> tuple[dict[str, np.ndarray], str]:
    """The region masks of one crop and where they came from: the face's keypoints in the crop when they
    give both eyes and the mouth (``"keypoints"``), else :data:`CANONICAL_KEYPOINTS` (``"template"``)."""
    if keypoints:
        try:
            return region_masks(keypoints, size), "keypoints"
        except ValueError:
            pass
    return region_masks(canonical_keypoints(size), size), "template"


def region_shares(heatmap: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Share of ``heatmap``'s mass (resized to the masks) on each region and ``elsewhere``; all zeros for
    a blank map."""
    from fer_keras.explain.cams import resize_map

    size = next(iter(masks.values())).shape
    m = resize_map(np.asarray(heatmap, np.float32), size[1], size[0]).astype(np.float64)
    total = m.sum()
    shares = {name: float(m[mask].sum() / total) if total > 0 else 0.0 for name, mask in masks.items()}
    shares["elsewhere"] = max(0.0, 1.0 - sum(shares.values())) if total > 0 else 0.0
    return shares


def region_table(maps: np.ndarray, labels: np.ndarray, classes: Sequence[str], size: int) -> dict:
    """Mean region shares per true class over dataset crops (canonical keypoints), with each region's
    share of the crop's area (what a uniform map would give) beside them."""
    masks = region_masks(canonical_keypoints(size), size)
    shares = [region_shares(m, masks) for m in maps]
    names = [*REGIONS, "elsewhere"]
    area = {name: float(masks[name].mean()) for name in REGIONS}
    area["elsewhere"] = 1.0 - sum(area.values())
    table = {"area": area, "per_class": {}}
    for c, cls in enumerate(classes):
        rows = [s for s, label in zip(shares, labels) if label == c]
        if rows:
            table["per_class"][cls] = {"n": len(rows), **{n: float(np.mean([r[n] for r in rows])) for n in names}}
    return table


def table_markdown(table: dict) -> str:
    names = [*REGIONS, "elsewhere"]
    lines = ["| class | n | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for cls, row in table["per_class"].items():
        lines.append(f"| {cls} | {row['n']} | " + " | ".join(f"{100 * row[n]:.1f} %" for n in names) + " |")
    lines.append("| (share of the crop's area) | | " + " | ".join(f"{100 * table['area'][n]:.1f} %" for n in names)
                 + " |")
    return "\n".join(lines)
