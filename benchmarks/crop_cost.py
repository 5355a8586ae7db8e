"""What the video pipeline's crops cost, and where: each found face classified several ways.

On textured labelled videos built by ``benchmarks.video_benchmark`` (shots of 15 frames, one to three
FER2013 test faces of 120-200 px each), the default detector runs on every ``--every``-th frame; each
detection matched to a pasted face (IoU >= 0.4, one to one, as the video benchmark scores) is classified
from:

- ``own``: the face's own FER2013 image, resized to the model's input as the datasets are;
- ``truth``: the pasted square cut from the decoded frame and resized as the datasets are (what the codec
  and the upscaling cost);
- ``pipeline``: the crop the analyzer classifies (``fer_keras.explain.analysis.Framing``, the defaults);
- ``box``: the detector's box, FER-framed, instead of the keypoints;
- ``keypoints x S`` and ``shift``: the keypoint square scaled by S about its centre, or moved by 5 % of
  its side (does the framing's size or place matter?), and the mean probabilities of several of them.

The accuracy of each, over the same faces, per video and on average; then how well three measures of a
face's size in the frame (eyes to mouth, between the eyes, the box) predict the side of the pasted
FER2013 image: where they agree with each other and not with the image, the dataset's own framing varies
and no crop can follow it. Over all videos' found faces: the crop's cost by quarter of its size error and
of its centre error against the pasted square (does the loss follow the framing?), and the framing's size
by true class (are some expressions framed differently, an open mouth lengthening eyes-to-mouth?). The
classifier is the served SavedModel of the shipped model (flip averaging inside), run in this process.

    python -m benchmarks.crop_cost --seeds 0,1,2,3,4,5,6 --out runs/crop-cost
    python -m benchmarks.crop_cost --seeds 7,8,9 --out runs/crop-cost     # videos built after a choice
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import describe
from benchmarks.video_benchmark import DEFAULT_FER2013, build_shots


def _scaled(face, factor: float):
    """``face`` with its keypoints spread by ``factor`` about the keypoint square's centre (so that the
    keypoint framing cuts a square ``factor`` times as large, at the same centre)."""
    from fer_keras.detection import Face, keypoint_square

    square = keypoint_square(face)
    if square is None:
        return face
    cx, cy = square[0], square[1]
    marks = {k: (cx + factor * (x - cx), cy + factor * (y - cy)) for k, (x, y) in face.landmarks.items()}
    return Face(face.box, face.score, marks)


SHIFTS = {f"shift {dx:+g},{dy:+g}": (dx, dy) for dx, dy in ((0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05))}
# Classifications averaged over several crops of a face (mean probabilities).
MEANS = {"mean(pipeline, box)": ("pipeline", "box"),
         "mean(pipeline, 4 shifts)": ("pipeline", *SHIFTS),
         "mean(pipeline, x0.9, x1.1)": ("pipeline", "keypoints x 0.9", "keypoints x 1.1")}


def _shifted(face, dx: float, dy: float):
    """``face`` with its keypoints moved by ``dx``, ``dy`` of the keypoint square's side."""
    from fer_keras.detection import Face, keypoint_square

    square = keypoint_square(face)
    if square is None:
        return face
    side = square[2]
    return Face(face.box, face.score, {k: (x + dx * side, y + dy * side) for k, (x, y) in face.landmarks.items()})


def crops_of_video(video: Path, truth: list[list[dict]], fer2013: Path, every: int, size: int,
                   scales: tuple[float, ...]) -> tuple[dict[str, list[np.ndarray]], list[int], list[dict], list[float]]:
    """Every kind of crop of each found face in every ``every``-th frame, its true label, its size cues and
    how far the pipeline's square's centre lies from the pasted square's (in pasted sides)."""
    from clients.sources import open_source
    from clients.tracking import iou
    from fer_keras.data.faces import _resize
    from fer_keras.detection import BlazeFaceDetector, keypoint_square
    from fer_keras.explain.analysis import Framing

    detector, framing, box_framing = BlazeFaceDetector(), Framing(), Framing(align=False)
    kinds: dict[str, list[np.ndarray]] = {"own": [], "truth": [], "pipeline": [], "box": []}
    kinds.update({name: [] for name in SHIFTS})
    kinds.update({f"keypoints x {s:g}": [] for s in scales})
    labels: list[int] = []
    cues: list[dict[str, float]] = []
    centres: list[float] = []
    own_cache: dict[str, np.ndarray] = {}
    for index, rgb in enumerate(open_source(str(video)).frames):
        if index % every == 0 and truth[index]:
            gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
            faces = detector.detect(rgb)
            used: set[int] = set()
            for g in truth[index]:
                scored = [(iou(tuple(g["box"]), f.box), i) for i, f in enumerate(faces) if i not in used]
                best, best_i = max(scored, default=(0.0, None))
                if best < 0.4:
                    continue
                used.add(best_i)
                face = faces[best_i]
                if g["source"] not in own_cache:
                    own_cache[g["source"]] = _resize(cv2.imread(str(fer2013 / g["source"]), cv2.IMREAD_GRAYSCALE),
                                                     size)
                x, y, w, h = g["box"]
                kinds["own"].append(own_cache[g["source"]])
                kinds["truth"].append(_resize(gray[y:y + h, x:x + w], size))
                kinds["pipeline"].append(framing.crop(rgb, face, size)[..., 0])
                kinds["box"].append(box_framing.crop(rgb, face, size)[..., 0])
                for name, (dx, dy) in SHIFTS.items():
                    kinds[name].append(framing.crop(rgb, _shifted(face, dx, dy), size)[..., 0])
                for s in scales:
                    kinds[f"keypoints x {s:g}"].append(framing.crop(rgb, _scaled(face, s), size)[..., 0])
                labels.append(g["label"])
                cues.append(_scale_cues(face, w))
                square = keypoint_square(face)
                centres.append(np.hypot(square[0] - x - w / 2, square[1] - y - h / 2) / w if square else np.nan)
    return kinds, labels, cues, centres


def _scale_cues(face, side: float) -> dict[str, float]:
    """log(pasted side / cue) for three measures of a found face's size: the distance from the eyes to the
    mouth (the keypoint framing's), between the eyes, and the detector's box side."""
    marks = {k: np.array(v, float) for k, v in face.landmarks.items()}
    eyes = (marks["left_eye"] + marks["right_eye"]) / 2
    return {"eyes to mouth": np.log(side / max(np.linalg.norm(marks["mouth"] - eyes), 1e-6)),
            "between the eyes": np.log(side / max(np.linalg.norm(marks["left_eye"] - marks["right_eye"]), 1e-6)),
            "box side": np.log(side / max(face.box[2], face.box[3], 1))}


def cost_by_error(error: np.ndarray, truth_right: np.ndarray, pipeline_right: np.ndarray,
                  parts: int = 4) -> list[tuple[float, float, int, float, float]]:
    """The found faces split into ``parts`` equal groups by a framing error (NaN: left out): per group its
    range, its count and the accuracy of the pasted square cut from the frame and of the pipeline's crop.
    Where the crop's cost grows with the error, the cost is the framing's."""
    keep = ~np.isnan(error)
    error, truth_right, pipeline_right = error[keep], truth_right[keep], pipeline_right[keep]
    order = np.argsort(error, kind="stable")
    rows = []
    for group in np.array_split(order, parts):
        if len(group):
            rows.append((float(error[group].min()), float(error[group].max()), len(group),
                         float(truth_right[group].mean()), float(pipeline_right[group].mean())))
    return rows


def size_bias_by_class(cue: np.ndarray, labels: np.ndarray, classes) -> dict[str, tuple[int, float]]:
    """Per true class: its found faces and the median of a log size cue (log of the pasted side over the
    measure) less the median over all faces. For the keypoint framing's cue, +0.05 means the pipeline frames
    that class's faces about 5 % tighter than faces as a whole."""
    middle = np.median(cue)
    return {name: (int((labels == k).sum()), float(np.median(cue[labels == k]) - middle))
            for k, name in enumerate(classes) if (labels == k).any()}


def spread(values: np.ndarray) -> float:
    """Median absolute deviation: the typical relative error of a size cue once its median is calibrated."""
    return float(np.median(np.abs(values - np.median(values))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2,3,4,5,6", help="textured videos' seeds (built where missing)")
    p.add_argument("--fer2013", default=str(DEFAULT_FER2013), help="FER2013 Kaggle folders")
    p.add_argument("--every", type=int, default=5, help="use every n-th frame")
    p.add_argument("--faces-from", choices=("test", "train"), default="test",
                   help="FER2013 split the videos' faces come from (train: videos to choose a setting on)")
    p.add_argument("--scales", default="0.9,1.1", help="keypoint squares scaled by these, beside the pipeline's")
    p.add_argument("--pretrained", default="gimefive-fer2013", help="shipped model (served SavedModel)")
    p.add_argument("--out", default="runs/crop-cost", help="the videos (SEED/test.mp4, truth.json) and results")
    args = p.parse_args(argv)
    fer2013 = Path(args.fer2013)
    if not (fer2013 / "test").is_dir():
        print(f"error: FER2013 not found at {fer2013}", file=sys.stderr)
        return 2
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        scales = tuple(float(s) for s in args.scales.split(",") if s.strip())
    except ValueError:
        print(f"error: --seeds and --scales take comma-separated numbers; got {args.seeds!r}, {args.scales!r}",
              file=sys.stderr)
        return 2
    from fer_keras.exporting import serving_base
    from fer_keras.loading import load_classifier

    classifier = load_classifier(serving_base(args.pretrained))
    size = int(classifier.input_shape[1])
    out = Path(args.out)
    results = {}
    all_cues: list[dict[str, float]] = []
    pooled: dict[str, list] = {"labels": [], "truth": [], "pipeline": [], "centre": []}
    print(f"machine: {describe()}")
    print(f"classifier: {args.pretrained} (served SavedModel, in process); every {args.every}th frame")
    for seed in seeds:
        folder = out / f"{'textured' if args.faces_from == 'test' else 'train-textured'}-s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "truth.json").is_file():
            try:
                truth = build_shots(fer2013, folder / "test.mp4", 58, 15, seed=seed, background="textured",
                                    split=args.faces_from)
            except ValueError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            (folder / "truth.json").write_text(json.dumps(truth))
        truth = json.loads((folder / "truth.json").read_text())
        kinds, labels, cues, centres = crops_of_video(folder / "test.mp4", truth, fer2013, args.every, size, scales)
        all_cues.extend(cues)
        y = np.array(labels)
        row = {"faces": len(labels)}
        probabilities = {kind: classifier.predict(np.stack(crops)[..., None].astype(np.float32))["probabilities"]
                         for kind, crops in kinds.items()}
        for name, parts in MEANS.items():
            if all(k in probabilities for k in parts):
                probabilities[name] = np.mean([probabilities[k] for k in parts], 0)
        for kind, p_ in probabilities.items():
            row[kind] = float(np.mean(np.argmax(p_, 1) == y))
        pooled["labels"].extend(labels)
        pooled["centre"].extend(centres)
        for kind in ("truth", "pipeline"):
            pooled[kind].extend(np.argmax(probabilities[kind], 1) == y)
        results[seed] = row
        print(f"seed {seed}: {row['faces']} found faces; " + ", ".join(
            f"{k} {v:.3f}" for k, v in row.items() if k != "faces"), flush=True)
    kinds = [k for k in next(iter(results.values())) if k != "faces"]
    mean = {k: float(np.mean([r[k] for r in results.values()])) for k in kinds}
    print("mean over videos: " + ", ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    print("cost against own images (points): " + ", ".join(
        f"{k} {100 * (mean['own'] - mean[k]):.1f}" for k in kinds if k != "own"))
    table = {k: np.array([c[k] for c in all_cues]) for k in all_cues[0]}
    table["mean of the three"] = np.mean([v - np.median(v) for v in table.values()], 0)
    sizes = {k: spread(v) for k, v in table.items()}
    print("the face's size from its detection against the pasted square's (spread of log ratios, median "
          "absolute deviation; 0.09 is +-9 %): " + ", ".join(f"{k} {v:.3f}" for k, v in sizes.items()))
    labels = np.array(pooled["labels"])
    truth_right, pipeline_right = np.array(pooled["truth"]), np.array(pooled["pipeline"])
    size_error = np.abs(table["eyes to mouth"] - np.median(table["eyes to mouth"]))
    by_error = {"size": cost_by_error(size_error, truth_right, pipeline_right),
                "centre": cost_by_error(np.array(pooled["centre"], float), truth_right, pipeline_right)}
    for name, rows in by_error.items():
        print(f"all videos' found faces by quarter of the pipeline crop's {name} error against the pasted square "
              f"({'|log ratio| after calibration' if name == 'size' else 'in pasted sides'}): " + "; ".join(
                  f"{lo:.3f}-{hi:.3f}: {n} faces, cut from the frame {t:.3f}, pipeline {q:.3f}, cost "
                  f"{100 * (t - q):+.1f}" for lo, hi, n, t, q in rows))
    from fer_keras.data.taxonomy import get_taxonomy

    bias = size_bias_by_class(table["eyes to mouth"], labels, get_taxonomy("six").classes)
    print("the pipeline's framing by true class (median log size against all faces'; + is tighter): " + ", ".join(
        f"{name} ({n}) {b:+.3f}" for name, (n, b) in bias.items()))
    (out / "crop_cost.json").write_text(json.dumps({"videos": results, "mean": mean, "size_spread": sizes,
                                                    "cost_by_error": by_error, "size_bias_by_class": bias}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
