"""Deletion / insertion faithfulness of saliency maps, against a random-map baseline.

For each face, pixels are ranked by the map (most salient first; ties in
random order). *Deletion* replaces the top-ranked pixels, a growing share at
each step, with the face's mean intensity and records the probability of the
explained class: a faithful map makes it fall fast (low area under the
curve). *Insertion* starts from a heavily blurred face and restores the
top-ranked pixels: a faithful map makes the probability rise fast (high
area). Maps of uniform random values are the baseline every method must
beat, drawn at the resolution of each method's own maps (``random@4x4`` for
Grad-CAM on GiMeFive's 4x4 last conv, ``random@64x64`` for pixel saliency):
deleting scattered random pixels damages a face far more than deleting the
same share as a few smooth blobs, so only a baseline of the same smoothness
is a fair one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from fer_keras.explain.cams import resize_map

RANDOM = "random"


def random_name(shape) -> str:
    return f"{RANDOM}@{shape[0]}x{shape[1]}"


def _ranks(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixel indices from most to least salient, ties broken at random."""
    flat = heatmap.ravel()
    return np.lexsort((rng.random(flat.size), -flat))


def perturbation_curves(
    predict: Callable[[np.ndarray], np.ndarray],
    faces: np.ndarray,
    maps: np.ndarray,
    class_ids: np.ndarray,
    steps: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves, each ``[N, steps + 1]`` class probabilities.

    Args:
        predict: ``faces -> probabilities`` for float ``[B, H, W, C]`` faces.
        faces: ``[N, H, W, C]`` faces.
        maps: ``[N, h, w]`` saliency maps (resized to the faces here).
        class_ids: ``[N]`` explained classes.
        steps: number of equal steps from 0 to all pixels.
        seed: tie-breaking seed.
    """
    rng = np.random.default_rng(seed)
    n, height, width, channels = faces.shape
    fractions = np.linspace(0, 1, steps + 1)
    deleted = np.empty((n, steps + 1, height, width, channels), np.float32)
    inserted = np.empty_like(deleted)
    for i in range(n):
        face = faces[i].astype(np.float32)
        order = _ranks(resize_map(maps[i], width, height), rng)
        blurred = cv2.GaussianBlur(face, (0, 0), sigmaX=max(1.0, width / 8)).reshape(face.shape)
        mean = np.full_like(face, face.mean())
        for k, fraction in enumerate(fractions):
            chosen = np.zeros(height * width, bool)
            chosen[order[: int(round(fraction * height * width))]] = True
            chosen = chosen.reshape(height, width, 1)
            deleted[i, k] = np.where(chosen, mean, face)
            inserted[i, k] = np.where(chosen, face, blurred)
    flat = lambda a: a.reshape(-1, height, width, channels)  # noqa: E731
    rows = np.repeat(class_ids, steps + 1)
    d = predict(flat(deleted))[np.arange(len(rows)), rows].reshape(n, steps + 1)
    ins = predict(flat(inserted))[np.arange(len(rows)), rows].reshape(n, steps + 1)
    return d, ins


def area_under(curves: np.ndarray) -> np.ndarray:
    """Per-curve area under a curve sampled at equal steps over [0, 1]."""
    return np.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), axis=1)


def faithfulness_report(
    predict: Callable[[np.ndarray], np.ndarray],
    explain_fn: Callable[[str, np.ndarray, np.ndarray], np.ndarray],
    faces: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    methods: Sequence[str],
    steps: int = 16,
    seed: int = 0,
    maps_out: dict | None = None,
) -> dict:
    """Deletion / insertion areas per method and per true class, with the random baselines.

    Args:
        predict: ``faces -> probabilities``.
        explain_fn: ``(method, faces, class_ids) -> maps``.
        faces, labels: the labelled faces.
        classes: class names.
        methods: explanation methods to compare (the random baseline is added).
        steps, seed: see :func:`perturbation_curves`.
        maps_out: a dict that receives each method's maps and the random baselines' (for figures and checks).

    Returns:
        ``{"methods": {name: {"deletion", "insertion", "per_class": {...}, "deletion_curve", "insertion_curve"}}, ...}``
    """
    probabilities = predict(faces.astype(np.float32))
    targets = probabilities.argmax(1)
    rng = np.random.default_rng(seed)
    report = {"n": int(len(faces)), "steps": steps, "target": "predicted class", "methods": {}}
    maps_of = {method: explain_fn(method, faces, targets) for method in methods}
    # random pixels, random 4x4 blocks and random maps at every method's own resolution
    shapes = sorted({m.shape[1:] for m in maps_of.values()} | {tuple(faces.shape[1:3]), (4, 4)})
    for shape in shapes:
        maps_of[random_name(shape)] = rng.random((len(faces), *shape))
    if maps_out is not None:
        maps_out.update(maps_of)
    for method, maps in maps_of.items():
        d, ins = perturbation_curves(predict, faces, maps, targets, steps, seed)
        d_auc, i_auc = area_under(d), area_under(ins)
        flat = maps.reshape(len(maps), -1)
        blank = flat.max(1) - flat.min(1) <= 1e-12
        per_class = {}
        for c, name in enumerate(classes):
            mask = labels == c
            if mask.any():
                per_class[name] = {"n": int(mask.sum()), "deletion": float(d_auc[mask].mean()),
                                   "insertion": float(i_auc[mask].mean()), "blank_maps": int(blank[mask].sum()),
                                   "deletion_curve": d[mask].mean(0).tolist(),
                                   "insertion_curve": ins[mask].mean(0).tolist()}
        report["methods"][method] = {
            "deletion": float(d_auc.mean()), "insertion": float(i_auc.mean()), "per_class": per_class,
            "map_shape": list(maps.shape[1:]), "blank_maps": int(blank.sum()),
            "deletion_curve": d.mean(0).tolist(), "insertion_curve": ins.mean(0).tolist(),
        }
    for method in methods:
        report["methods"][method]["beats_random_in"] = beats_random(report, method)
    return report


def beats_random(report: dict, method: str) -> list[str]:
    """The classes in which ``method`` is below every random baseline's deletion area *and* above every
    random baseline's insertion area ("all" first when it does so over all faces as well)."""
    baselines = [r for name, r in report["methods"].items() if name.startswith(RANDOM)]
    ours = report["methods"][method]

    def wins(mine, theirs):
        return all(mine["deletion"] < t["deletion"] and mine["insertion"] > t["insertion"] for t in theirs)

    won = ["all"] if wins(ours, baselines) else []
    return won + [c for c, row in ours["per_class"].items()
                  if wins(row, [b["per_class"][c] for b in baselines if c in b["per_class"]])]


def report_table(report: dict) -> str:
    """A Markdown table of the areas per method (deletion: lower is better; insertion: higher)."""
    classes = list(next(iter(report["methods"].values()))["per_class"])
    lines = ["| method | deletion AUC (lower is better) | insertion AUC (higher is better) | blank maps "
             "| beats every random baseline in |", "|---|---|---|---|---|"]
    for name, r in report["methods"].items():
        if name.startswith(RANDOM):
            lines.append(f"| {name} | {r['deletion']:.3f} | {r['insertion']:.3f} | - | - |")
            continue
        won = [c for c in r["beats_random_in"] if c != "all"]
        verdict = ("every class" if len(won) == len(classes) else
                   f"{len(won)} of {len(classes)} classes" + (f" ({', '.join(won)})" if won else ""))
        lines.append(f"| {name} | {r['deletion']:.3f} | {r['insertion']:.3f} | {r['blank_maps']} of {report['n']} | "
                     f"{verdict}{'' if 'all' in r['beats_random_in'] else ', not over all faces'} |")
    return "\n".join(lines)
