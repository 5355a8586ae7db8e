"""Face detectors side by side: recall, false boxes and milliseconds per 640x480 frame, and their framing.

Real FER2013 faces are upscaled to 60-250 px and pasted into 640x480 scenes
(blurred-noise background, JPEG quality 75, as ``fer_keras.robustness`` builds
them); every detector sees the same frames in one run. Reported per detector
and face size: recall at IoU >= 0.4 against the pasted square, false boxes per
frame, milliseconds per frame, and how its box relates to FER2013's framing
(median side of the pasted square over the box's longer side, and the median
offset of the square's centre from the box centre, in box sides). The framing
figures on *training* faces are what ``BlazeFaceDetector.FRAMING`` holds.

    python -m benchmarks.detectors --faces 300
    python -m benchmarks.detectors --detectors blazeface,blazeface-single,mtcnn   # tiles or not
    python -m benchmarks.detectors --split train --detectors blazeface-single-raw --faces 400   # framing calibration
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FER2013 = REPO.parent / "shared" / "data" / "fer2013"
SIZES = (60, 100, 150, 200, 250)


def make(name: str):
    from fer_keras.detection import BlazeFaceDetector, make_detector

    if name.startswith("blazeface"):
        words = name.split("-")[1:]
        model = next((w for w in words if w in BlazeFaceDetector.MODELS), "back")
        return BlazeFaceDetector(model=model, fer_framing="raw" not in words, tiles="single" not in words)
    return make_detector(name)


def measure(detector, frames) -> dict:
    from fer_keras.detection import iou

    found, false, ms, ratios, offsets, total = 0, 0, [], [], [], 0
    for frame, placed in frames:
        start = time.perf_counter()
        boxes = [f.box for f in detector.detect(frame)]
        ms.append(1000 * (time.perf_counter() - start))
        used = set()
        for _, truth in placed:
            total += 1
            best = max(((iou(truth, b), j) for j, b in enumerate(boxes) if j not in used), default=(0.0, -1))
            if best[0] >= 0.4:
                used.add(best[1])
                found += 1
                x, y, w, h = boxes[best[1]]
                side = max(w, h)
                ratios.append(truth[2] / side)
                offsets.append(
                    ((truth[0] + truth[2] / 2 - (x + w / 2)) / side, (truth[1] + truth[3] / 2 - (y + h / 2)) / side)
                )
        false += len(boxes) - len(used)
    off = np.median(np.array(offsets), axis=0) if offsets else (np.nan, np.nan)
    return {"recall": found / max(total, 1), "false_per_frame": false / max(len(frames), 1),
            "ms_per_frame": float(np.median(ms)), "side_ratio": float(np.median(ratios)) if ratios else np.nan,
            "centre_dx": float(off[0]), "centre_dy": float(off[1]), "faces": total, "frames": len(frames)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fer2013", default=str(DEFAULT_FER2013), help="FER2013 folder (Kaggle layout)")
    p.add_argument("--split", choices=("train", "test"), default="test", help="whose faces to paste")
    p.add_argument("--faces", type=int, default=300, help="faces per size")
    p.add_argument("--detectors", default="blazeface,mtcnn,haar",
                   help="comma list: mtcnn, haar, blazeface[-back|-full|-short][-single][-raw] (single: the whole "
                        "frame only, no tiles; raw: BlazeFace's own box)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not Path(args.fer2013, args.split).is_dir():
        print(f"FER2013 not found at {args.fer2013} (its {args.split}/ folder)", file=sys.stderr)
        return 2

    from fer_keras.data.faces import load_faces
    from fer_keras.data.readers.fer2013 import read_fer2013
    from fer_keras.data.taxonomy import SIX
    from fer_keras.robustness import scene_frames, subsample

    records = [r for r in read_fer2013(args.fer2013)[0] if r.split == args.split]
    faces = load_faces(records, SIX, 64, progress=False)[0]
    chosen = faces.images[subsample(faces.labels, args.faces, args.seed)]
    print(f"machine: {describe()}")
    print(f"{len(chosen)} FER2013 {args.split} faces per size, pasted into 640x480 scenes")
    detectors = {name: make(name) for name in args.detectors.split(",")}
    print(f"{'detector':<18}{'size':>6}{'recall':>8}{'false/fr':>9}{'ms/frame':>9}{'side':>7}{'dx':>7}{'dy':>7}")
    for size in SIZES:
        frames = scene_frames(chosen, size, args.seed)
        for name, det in detectors.items():
            r = measure(det, frames)
            print(f"{name:<18}{size:>6}{r['recall']:8.3f}{r['false_per_frame']:9.2f}{r['ms_per_frame']:9.1f}"
                  f"{r['side_ratio']:7.2f}{r['centre_dx']:7.2f}{r['centre_dy']:7.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
