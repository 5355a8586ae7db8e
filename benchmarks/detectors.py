"""Face detectors side by side: recall, false boxes and milliseconds per 640x480 frame, and their framing.

Real FER2013 faces are upscaled to 60-250 px and pasted into 640x480 scenes
(JPEG quality 75, as ``fer_keras.robustness`` builds them) over blurred noise
and over textures (walls, fabric, foliage, noise: ``--backgrounds``); every
detector sees the same frames in one run. Reported per detector, background and
face size: recall at IoU >= 0.4 against the pasted square, false boxes per
frame, milliseconds per frame, and how its box relates to FER2013's framing
(median side of the pasted square over the box's longer side, and the median
offset of the square's centre from the box centre, in box sides) and to the
detector's keypoints (kp side: the square's side over the eyes-to-mouth
distance; kp along: where its centre sits on the line from between the eyes
(0) to the mouth (1)). The framing figures on *training* faces are what
``BlazeFaceDetector.FRAMING`` and ``KEYPOINT_FRAMING`` hold.

``--empty-frames N`` adds face-free 640x480 frames, every box on them false:
N of each texture of ``fer_keras.data.textures`` at full and at low contrast
and blurred, scikit-image's brick, grass and gravel photographs, and its
photographs without people (coffee, a cat, a rocket launch, the moon, coins,
the Hubble deep field, a micrograph, printed text), scaled and cut to frame
size. Reported: false boxes per frame for each kind and over all.

    python -m benchmarks.detectors --faces 300
    python -m benchmarks.detectors --detectors blazeface,blazeface-unverified,mtcnn,haar --empty-frames 20
    python -m benchmarks.detectors --detectors blazeface,blazeface-single,mtcnn   # tiles or not
    python -m benchmarks.detectors --detectors blazeface,blazeface-once   # with and without the second look
    python -m benchmarks.detectors --detectors blazeface,blazeface-lookshort --empty-frames 10   # second-look model
    python -m benchmarks.detectors --detectors blazeface,blazeface-onebox --empty-frames 10   # O-Net's two views or one
    python -m benchmarks.detectors --split train --detectors blazeface-single-raw --faces 400   # framing calibration
    python -m benchmarks.detectors --video runs/vb-textured --every 5 --detectors blazeface,blazeface-look3.0

``--video FOLDER`` (repeatable) scores the detectors on every ``--every``-th
frame of a benchmark video (``test.mp4`` and ``truth.json`` as
``benchmarks.video_benchmark`` writes them) instead of on the scenes: the
detector alone, without the video client's tracking. ``blazeface-lookX`` is
BlazeFace with a second-look window of X box sides; ``blazeface-lookM`` runs the second look
with BlazeFace model M (back, full or short).
"""

from __future__ import annotations

import argparse
import json
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
        options = {"verify": None} if "unverified" in words else {}
        if "onebox" in words:  # O-Net on BlazeFace's box alone (no second, FER-framed view)
            options["verify_framed"] = False
        if {"once", "unverified"} & set(words):  # no second look
            options["second_look"] = None
        for word in words:
            if word.startswith("look") and word[4:] in BlazeFaceDetector.MODELS:
                options["second_look_model"] = word[4:]
            elif word.startswith("look"):
                try:
                    options["second_look"] = float(word[4:])
                except ValueError:
                    raise ValueError(f"detector {name!r}: lookX takes the second-look window in box sides, "
                                     f"e.g. blazeface-look2.5; got {word!r}") from None
        return BlazeFaceDetector(model=model, fer_framing="raw" not in words, tiles="single" not in words, **options)
    return make_detector(name)


def measure(detector, frames) -> dict:
    from fer_keras.detection import iou

    found, false, ms, ratios, offsets, total = 0, 0, [], [], [], 0
    keypoint_sides, keypoint_along, template = [], [], {}
    for frame, placed in frames:
        start = time.perf_counter()
        faces = detector.detect(frame)
        boxes = [f.box for f in faces]
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
                marks = faces[best[1]].landmarks
                if {"left_eye", "right_eye", "mouth"} <= set(marks):
                    # the pasted square against the keypoints: its side over the eye-to-mouth distance, and
                    # its centre along the eyes-to-mouth line (0: between the eyes, 1: at the mouth)
                    eyes = (np.array(marks["left_eye"], float) + np.array(marks["right_eye"], float)) / 2
                    down = np.array(marks["mouth"], float) - eyes
                    length = float(np.hypot(*down))
                    if length > 0:
                        centre = np.array([truth[0] + (truth[2] - 1) / 2, truth[1] + (truth[3] - 1) / 2])
                        keypoint_sides.append(truth[2] / length)
                        keypoint_along.append(float((centre - eyes) @ down) / length ** 2)
                # every keypoint in the pasted FER crop's own coordinates (0..1 across and down)
                for name, (kx, ky) in marks.items():
                    template.setdefault(name, []).append(((kx - truth[0]) / truth[2], (ky - truth[1]) / truth[3]))
        false += len(boxes) - len(used)
    off = np.median(np.array(offsets), axis=0) if offsets else (np.nan, np.nan)
    return {"recall": found / max(total, 1), "false_per_frame": false / max(len(frames), 1),
            "ms_per_frame": float(np.median(ms)), "side_ratio": float(np.median(ratios)) if ratios else np.nan,
            "centre_dx": float(off[0]), "centre_dy": float(off[1]), "faces": total, "frames": len(frames),
            "keypoint_side": float(np.median(keypoint_sides)) if keypoint_sides else np.nan,
            "keypoint_along": float(np.median(keypoint_along)) if keypoint_along else np.nan,
            "keypoint_template": {k: [round(float(v), 3) for v in np.median(np.array(p), axis=0)]
                                  for k, p in sorted(template.items())}}


def video_frames(folder: Path, every: int) -> list:
    """Every ``every``-th frame of a benchmark video (RGB) with its true boxes, as :func:`measure` takes them."""
    import cv2

    truth = json.loads((folder / "truth.json").read_text())
    capture, frames, index = cv2.VideoCapture(str(folder / "test.mp4")), [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0 and index < len(truth):
            placed = [(g["label"], tuple(g["box"])) for g in truth[index]]
            frames.append((cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), placed))
        index += 1
    return frames


def _videos(args, detectors: dict) -> int:
    folders = [Path(v) for v in args.video]
    missing = [str(f) for f in folders if not (f / "test.mp4").is_file() or not (f / "truth.json").is_file()]
    if missing or args.every < 1:
        print(f"--video needs folders holding test.mp4 and truth.json (missing in: {', '.join(missing) or '-'}), "
              f"--every a count of 1 or more; got {args.every}", file=sys.stderr)
        return 2
    print(f"machine: {describe()}")
    print(f"{'video':<28}{'detector':<22}{'frames':>7}{'recall':>8}{'false/fr':>9}{'ms/frame':>9} (median)")
    for folder in folders:
        frames = video_frames(folder, args.every)
        for name, det in detectors.items():
            if frames and hasattr(det, "seconds"):  # BlazeFace's mean time by part, once its first call is over
                det.detect(frames[0][0])  # (O-Net is converted on its first call)
            before = dict(getattr(det, "seconds", {}))
            r = measure(det, frames)
            parts = ", ".join(f"{k.replace('_', '-')} {1000 * (v - before[k]) / len(frames):.1f}"
                              for k, v in getattr(det, "seconds", {}).items())
            print(f"{str(folder):<27} {name:<22}{len(frames):>7}{r['recall']:8.3f}{r['false_per_frame']:9.3f}"
                  f"{r['ms_per_frame']:9.1f}{'   mean ms: ' + parts if parts else ''}", flush=True)
    return 0


PHOTOGRAPHS = ("coffee", "chelsea", "rocket", "moon", "coins", "hubble_deep_field", "immunohistochemistry", "text")
NATURAL_TEXTURES = ("brick", "grass", "gravel")


def _frame(gray_or_rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 640x480 RGB frame cut from an image scaled so that it covers the frame (random place), JPEG 75."""
    import cv2

    image = gray_or_rgb if gray_or_rgb.ndim == 3 else cv2.cvtColor(gray_or_rgb, cv2.COLOR_GRAY2RGB)
    image = image[..., :3].astype(np.uint8)
    h, w = image.shape[:2]
    scale = max(480 / h, 640 / w) * rng.uniform(1.0, 1.5)
    image = cv2.resize(image, (int(np.ceil(w * scale)), int(np.ceil(h * scale))), interpolation=cv2.INTER_AREA
                       if scale < 1 else cv2.INTER_LINEAR)
    y, x = int(rng.integers(0, image.shape[0] - 480 + 1)), int(rng.integers(0, image.shape[1] - 640 + 1))
    ok, data = cv2.imencode(".jpg", image[y:y + 480, x:x + 640], [cv2.IMWRITE_JPEG_QUALITY, 75])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)  # the same channels back; colour order does not matter here


def empty_frames(per_kind: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Face-free frames by kind (see the module's docstring)."""
    import cv2

    from fer_keras.data.textures import TEXTURES, texture

    rng = np.random.default_rng([seed, 28])
    kinds: dict[str, list[np.ndarray]] = {}
    for name in TEXTURES:
        full = [texture(name, 480, 640, rng) for _ in range(per_kind)]
        kinds[name] = [_frame(t, rng) for t in full]
        kinds[f"{name}, low contrast"] = [_frame((128 + 0.35 * (t.astype(np.float32) - t.mean())).astype(np.uint8),
                                                 rng) for t in full]
        kinds[f"{name}, blurred"] = [_frame(cv2.GaussianBlur(t, (0, 0), rng.uniform(1.5, 3.0)), rng) for t in full]
    try:
        from skimage import data as skdata
    except ImportError:
        print("scikit-image is not installed: no photographs among the face-free frames", file=sys.stderr)
        return kinds
    for group, names in (("brick / grass / gravel", NATURAL_TEXTURES), ("photographs without people", PHOTOGRAPHS)):
        images = [getattr(skdata, n)() for n in names]
        kinds[group] = [_frame(images[k % len(images)], rng) for k in range(per_kind * 2)]
    return kinds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fer2013", default=str(DEFAULT_FER2013), help="FER2013 folder (Kaggle layout)")
    p.add_argument("--split", choices=("train", "test"), default="test", help="whose faces to paste")
    p.add_argument("--faces", type=int, default=300, help="faces per size")
    p.add_argument("--detectors", default="blazeface,mtcnn,haar",
                   help="comma list: mtcnn, haar, blazeface[-back|-full|-short][-single][-raw][-onebox] (single: "
                        "the whole frame only, no tiles; raw: BlazeFace's own box; onebox: O-Net verifies BlazeFace's "
                        "box alone, not also its FER2013 framing)")
    p.add_argument("--backgrounds", default="blurred-noise,textured",
                   help="scene backgrounds, comma list of blurred-noise, textured. Default: %(default)s")
    p.add_argument("--empty-frames", type=int, default=0, help="face-free frames of each kind (0: none)")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="face sizes in the scenes (px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", action="append", default=[], metavar="FOLDER",
                   help="score on a benchmark video's frames instead of the scenes (repeatable)")
    p.add_argument("--every", type=int, default=5, help="with --video: every n-th frame. Default: %(default)s")
    args = p.parse_args(argv)
    try:
        detectors = {name: make(name) for name in args.detectors.split(",")}
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if args.video:
        return _videos(args, detectors)
    try:
        backgrounds = [b for b in args.backgrounds.split(",") if b]
        sizes = [int(v) for v in args.sizes.split(",") if v]
    except ValueError:
        print(f"--sizes takes whole numbers; got {args.sizes!r}", file=sys.stderr)
        return 2
    if not sizes or min(sizes) < 16 or args.empty_frames < 0:
        print(f"--sizes takes face sides of at least 16 px, --empty-frames a count of 0 or more; got {args.sizes!r}, "
              f"{args.empty_frames}", file=sys.stderr)
        return 2
    unknown = set(backgrounds) - {"blurred-noise", "textured"}
    if unknown:
        print(f"unknown background(s) {sorted(unknown)}; choose from: blurred-noise, textured", file=sys.stderr)
        return 2
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
    print(f"{'detector':<22}{'background':<15}{'size':>6}{'recall':>8}{'false/fr':>9}{'ms/frame':>9}{'side':>7}"
          f"{'dx':>7}{'dy':>7}{'kp side':>8}{'kp along':>9}")
    templates = []
    for background in backgrounds:
        for size in sizes:
            frames = scene_frames(chosen, size, args.seed, background)
            for name, det in detectors.items():
                r = measure(det, frames)
                print(f"{name:<22}{background:<15}{size:>6}{r['recall']:8.3f}{r['false_per_frame']:9.2f}"
                      f"{r['ms_per_frame']:9.1f}{r['side_ratio']:7.2f}{r['centre_dx']:7.2f}{r['centre_dy']:7.2f}"
                      f"{r['keypoint_side']:8.2f}{r['keypoint_along']:9.2f}", flush=True)
                templates.append((f"{name} {background} {size}", r["keypoint_template"]))
    if any(t for _, t in templates):
        print("\nmedian keypoints in the FER crop's own coordinates (x, y from its top-left, in sides):")
        for label, template in templates:
            print(f"  {label}: " + ", ".join(f"{k} ({x:.3f}, {y:.3f})" for k, (x, y) in template.items()))
    if args.empty_frames:
        kinds = empty_frames(args.empty_frames, args.seed)
        print(f"\nface-free frames: {sum(map(len, kinds.values()))} ({args.empty_frames} of each texture kind, "
              f"{2 * args.empty_frames} of each photograph group); false boxes per frame")
        print(f"{'kind':<36}" + "".join(f"{n:>22}" for n in detectors))
        totals = dict.fromkeys(detectors, 0)
        for kind, frames in kinds.items():
            row = []
            for name, det in detectors.items():
                boxes = sum(len(det.detect(f)) for f in frames)
                totals[name] += boxes
                row.append(boxes / len(frames))
            print(f"{kind:<36}" + "".join(f"{v:22.3f}" for v in row), flush=True)
        n = sum(map(len, kinds.values()))
        print(f"{'all face-free frames':<36}" + "".join(f"{totals[name] / n:22.3f}" for name in detectors))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
