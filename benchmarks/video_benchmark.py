"""Video analyzer benchmark on a labelled test video built from real FER2013 test faces.

Builds a 640x480, 30 fps video in which one to three FER2013 test faces
(upscaled, moving, bouncing off the edges) appear, with ground-truth boxes and
labels; runs the analyzer on it against the local server (started here); and
prints frames per second end to end, time per stage, detection recall against
the ground truth (IoU >= 0.5), six-class accuracy of the faces found, and how
often each face's heatmap was refreshed.

    python -m benchmarks.video_benchmark --model-base-path models/gimefive
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import describe

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FER2013 = REPO.parent / "shared" / "data" / "fer2013"


def build_video(fer2013: Path, path: Path, seconds: float = 10.0, fps: int = 30, seed: int = 0,
                size: tuple[int, int] = (640, 480)) -> list[list[dict]]:
    """Writes the test video and returns its ground truth: per frame, the faces' boxes and labels."""
    from fer_keras.data.readers.fer2013 import read_fer2013
    from fer_keras.data.taxonomy import SIX

    rng = np.random.default_rng(seed)
    records = [r for r in read_fer2013(str(fer2013))[0] if r.split == "test" and SIX.index(r.emotion) is not None]
    frames = int(seconds * fps)
    width, height = size
    # Faces come and go: three slots, each shows a face for 3-5 s, then may pause.
    schedule = []
    for slot in range(3):
        t = 0 if slot == 0 else int(rng.integers(0, 2 * fps))
        while t < frames:
            length = int(rng.integers(3 * fps, 5 * fps))
            record = records[int(rng.integers(len(records)))]
            side = int(rng.integers(110, 170))
            face = cv2.resize(cv2.imread(record.path, cv2.IMREAD_GRAYSCALE), (side, side), interpolation=cv2.INTER_CUBIC)
            pos = np.array([rng.uniform(0, width - side), rng.uniform(0, height - side)])
            vel = rng.uniform(-2.5, 2.5, 2)
            schedule.append((t, min(frames, t + length), face, SIX.index(record.emotion), pos, vel))
            t += length + (int(rng.integers(0, fps)) if slot else 0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    background = cv2.GaussianBlur(rng.integers(40, 200, (height, width), dtype=np.uint8), (0, 0), 25)
    truth: list[list[dict]] = []
    for f in range(frames):
        frame = cv2.cvtColor(background, cv2.COLOR_GRAY2BGR)
        boxes: list[dict] = []
        for start, end, face, label, pos, vel in schedule:
            if not start <= f < end:
                continue
            side = face.shape[0]
            x, y = pos + vel * (f - start)
            xi, yi = int(_bounce(x, width - side)), int(_bounce(y, height - side))
            if any(_overlap((xi, yi, side, side), b["box"]) > 0.1 for b in boxes):
                continue  # keep faces apart: no ground truth for hidden faces
            frame[yi:yi + side, xi:xi + side] = face[..., None]
            boxes.append({"box": [xi, yi, side, side], "label": label})
        writer.write(frame)
        truth.append(boxes)
    writer.release()
    return truth


def _bounce(value: float, limit: float) -> float:
    """Position moving freely, reflected at 0 and ``limit`` (a face bouncing off the frame edges)."""
    v = value % (2 * limit)
    return v if v <= limit else 2 * limit - v


def _overlap(a, b) -> float:
    from clients.tracking import iou

    return iou(tuple(a), tuple(b))


def _on_face(truth_box, box) -> float:
    """1 when ``box``'s centre lies inside ``truth_box`` and their sides differ by less than 2x, else 0."""
    gx, gy, gw, gh = truth_box
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    inside = gx <= cx <= gx + gw and gy <= cy <= gy + gh
    return float(inside and 0.5 < max(w, h) / max(gw, gh) < 2)


def score(truth: list[list[dict]], records: list[dict], classes, region: str = "box", criterion: str = "iou") -> dict:
    """Recall of ground-truth faces and accuracy of the classified ones.

    ``region`` is the face region matched against the ground truth: "box" (the
    tracked detector box) or "crop" (the square the analyzer classified).
    ``criterion`` "iou": IoU >= 0.5 with the ground-truth box (the whole pasted
    FER2013 image); "centre": the region's centre lies inside the ground-truth
    box and its side is within a factor of 2 (the face was found, however its
    box is framed).
    """
    from clients.tracking import iou

    match = iou if criterion == "iou" else _on_face
    least = 0.5 if criterion == "iou" else 1.0
    total = found = correct = 0
    for gt, record in zip(truth, records):
        used = set()
        for g in gt:
            total += 1
            best, best_i = 0.0, None
            for i, face in enumerate(record["faces"]):
                overlap = match(tuple(g["box"]), tuple(face[region]))
                if i not in used and overlap > best:
                    best, best_i = overlap, i
            if best >= least:
                used.add(best_i)
                found += 1
                predicted = max(record["faces"][best_i]["smoothed"].items(), key=lambda kv: kv[1])[0]
                correct += predicted == classes[g["label"]]
    return {"ground_truth_faces": total, "recall": found / max(total, 1), "accuracy_of_found": correct / max(found, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base-path", default=str(REPO / "models" / "gimefive"), help="served SavedModel versions")
    p.add_argument("--fer2013", default=str(DEFAULT_FER2013), help="FER2013 Kaggle folders")
    p.add_argument("--seconds", type=float, default=10.0, help="video length")
    p.add_argument("--seed", type=int, default=0, help="seed of the test video (faces, sizes, paths)")
    p.add_argument("--detector", default="mtcnn", choices=("mtcnn", "haar"))
    p.add_argument("--detect-every", type=int, default=5)
    p.add_argument("--explain-every", type=int, default=10)
    p.add_argument("--batch-frames", type=int, default=8)
    p.add_argument("--margin", type=float, default=None, help="crop margin (default: the analyzer's)")
    p.add_argument("--box-smoothing", type=float, default=None, help="track box smoothing (default: the analyzer's)")
    p.add_argument("--candidate-threshold", type=float, default=None,
                   help="MTCNN P-Net/R-Net threshold (default: the detector's)")
    p.add_argument("--out", default=None, help="keep the video, JSON lines and summary here")
    args = p.parse_args(argv)
    if not Path(args.fer2013, "test").is_dir():
        print(f"FER2013 not found at {args.fer2013}", file=sys.stderr)
        return 2
    from clients.analyzer import AnalyzerConfig, VideoAnalyzer
    from clients.client import EmotionClient
    from clients.sources import open_source
    from clients.video import start_embedded_server

    out = Path(args.out or tempfile.mkdtemp(prefix="video-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    truth = build_video(Path(args.fer2013), out / "test.mp4", args.seconds, seed=args.seed)
    (out / "truth.json").write_text(json.dumps(truth))
    server = start_embedded_server("gimefive", args.model_base_path)
    try:
        client = EmotionClient(server.address, "gimefive")
        tuned = {k: v for k, v in (("margin", args.margin), ("box_smoothing", args.box_smoothing)) if v is not None}
        config = AnalyzerConfig(detector=args.detector, detect_every=args.detect_every,
                                explain_every=args.explain_every, batch_frames=args.batch_frames, **tuned)
        detector = None
        if args.candidate_threshold is not None and args.detector == "mtcnn":
            from fer_keras.detection import MTCNNDetector

            detector = MTCNNDetector(candidate_threshold=args.candidate_threshold)
        analyzer = VideoAnalyzer(client, config, detector=detector)
        summary = analyzer.run(open_source(str(out / "test.mp4")), video_out=out / "annotated.mp4",
                               jsonl=out / "frames.jsonl", progress=False)
    finally:
        server.stop(grace=1.0)
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    quality = score(truth, records, client.classes)
    cropped = score(truth, records, client.classes, region="crop")
    centred = score(truth, records, client.classes, region="crop", criterion="centre")
    refreshes = sum(f["heatmap_refreshed"] for r in records for f in r["faces"])
    face_seconds = sum(len(r["faces"]) for r in records) / 30.0
    every_frame = all(len(r["faces"]) >= 1 for r, gt in zip(records, truth) if gt)
    print(f"machine: {describe()}")
    print(f"video: {len(records)} frames 640x480 @30 fps, {quality['ground_truth_faces']} face instances; "
          f"detector {args.detector} every {args.detect_every} frames, Grad-CAM every {args.explain_every} frames; "
          f"crop margin {config.margin}, box smoothing {config.box_smoothing}")
    print(f"end to end: {summary['frames_per_second']} frames/s")
    print("stage ms/frame: " + ", ".join(f"{k} {v}" for k, v in summary["stage_ms_per_frame"].items()))
    print(f"detection recall (IoU>=0.5 with the detector's box): {quality['recall']:.3f}; six-class accuracy of "
          f"found faces: {quality['accuracy_of_found']:.3f}")
    print(f"detection recall (IoU>=0.5 with the classified crop): {cropped['recall']:.3f}; "
          f"six-class accuracy of found faces: {cropped['accuracy_of_found']:.3f}")
    print(f"faces found (crop centre inside the ground truth, side within 2x): {centred['recall']:.3f}; "
          f"six-class accuracy of found faces: {centred['accuracy_of_found']:.3f}")
    print(f"heatmap refreshes per face per second: {refreshes / max(face_seconds, 1e-9):.2f}; "
          f"a face classified in every frame that has one: {every_frame}")
    (out / "benchmark.json").write_text(json.dumps({"summary": summary, **quality, "with_crop": cropped, "centre_in_truth": centred,
                                                    "heatmap_refreshes_per_face_second": refreshes / max(face_seconds, 1e-9)},
                                                   indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
