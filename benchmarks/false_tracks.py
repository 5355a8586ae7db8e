"""Where a video benchmark run's false boxes come from: passing mistakes of a good track, or tracks that never
matched a face.

Reads a run of ``benchmarks.video_benchmark`` (its ``frames.jsonl``) and the video it ran on (``test.mp4``,
``truth.json``), counts the drawn boxes that match no face (IoU < 0.4, as the benchmark scores them) by the
track they belong to, prints each false box's side against the pasted face it overlaps, and draws the middle
frame of every track that never matched a face (truth green, the track's box red) into one picture.

    python -m benchmarks.false_tracks --run runs/vb-textured-look-c0 --video runs/vb-textured --out never.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

LEAST_IOU = 0.4  # benchmarks.video_benchmark's match


def false_tracks(truth: list[list[dict]], records: list[dict]) -> dict:
    """The false boxes of a run, by track: ``false`` (frame, track, side, side of the overlapping true face or 0),
    ``kinds`` (how many are on a track that matched a face before, only after, or never) and ``never``
    (track -> its frames and boxes, for tracks that never matched)."""
    from clients.tracking import iou

    history: dict[int, list] = {}
    false = []
    for index, (gt, record) in enumerate(zip(truth, records)):
        for face in record["faces"]:
            box = tuple(face["box"])
            overlaps = [(iou(tuple(g["box"]), box), g["box"][2]) for g in gt]
            best = max((o for o, _ in overlaps), default=0.0)
            touching = max((side for o, side in overlaps if o > 0), default=0)
            history.setdefault(face["track"], []).append((index, best >= LEAST_IOU, face["box"]))
            if best < LEAST_IOU:
                false.append((index, face["track"], face["box"][2], touching))
    kinds = {"matched before": 0, "matched only after": 0, "never matched": 0}
    never: dict[int, list] = {}
    for index, track, _, _ in false:
        seen = history[track]
        if any(i < index and ok for i, ok, _ in seen):
            kinds["matched before"] += 1
        elif any(ok for _, ok, _ in seen):
            kinds["matched only after"] += 1
        else:
            kinds["never matched"] += 1
            never.setdefault(track, [(i, box) for i, _, box in seen])
    return {"frames": len(records), "false": false, "kinds": kinds, "never": never}


def draw(video: Path, truth: list[list[dict]], never: dict, out: Path, columns: int = 3) -> int:
    """The middle frame of each never-matched track, truth in green and the track's box in red, tiled at
    half size; returns the tiles drawn."""
    import cv2

    by_frame: dict[int, list] = {}
    for frames in never.values():
        index, box = frames[len(frames) // 2]
        by_frame.setdefault(index, []).append(box)
    tiles = []
    capture = cv2.VideoCapture(str(video))
    index = 0
    while by_frame:
        ok, frame = capture.read()
        if not ok:
            break
        for box in by_frame.pop(index, []):
            canvas = frame.copy()
            for g in truth[index]:
                x, y, w, h = g["box"]
                cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 200, 0), 2)
            x, y, w, h = box
            cv2.rectangle(canvas, (x, y), (x + w, y + h), (0, 0, 255), 2)
            tiles.append(cv2.resize(canvas, (canvas.shape[1] // 2, canvas.shape[0] // 2)))
        index += 1
    capture.release()
    if not tiles:
        return 0
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[k:k + columns]) for k in range(0, len(tiles), columns)]
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(rows))
    return len([t for t in tiles if t.any()])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a video_benchmark --out folder (frames.jsonl)")
    p.add_argument("--video", required=True, help="the folder of the video it ran on (test.mp4, truth.json)")
    p.add_argument("--out", default=None, help="picture (.png or .jpg) of the never-matched tracks (none: counts only)")
    args = p.parse_args(argv)
    run, video = Path(args.run), Path(args.video)
    missing = [str(f) for f in (run / "frames.jsonl", video / "truth.json", video / "test.mp4") if not f.is_file()]
    if missing:
        print(f"not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    truth = json.loads((video / "truth.json").read_text())
    records = [json.loads(line) for line in (run / "frames.jsonl").read_text().splitlines() if line.strip()]
    if len(records) != len(truth):
        print(f"{run} has {len(records)} frames and {video} {len(truth)}: not a run on this video", file=sys.stderr)
        return 2
    found = false_tracks(truth, records)
    false = found["false"]
    print(f"{len(false)} false boxes in {found['frames']} frames ({len(false) / max(found['frames'], 1):.3f} per "
          f"frame); on a track that " + ", ".join(f"{k}: {v}" for k, v in found["kinds"].items()))
    ratios = np.array([side / touching for _, _, side, touching in false if touching])
    if len(ratios):
        q = np.percentile(ratios, [10, 25, 50, 75, 90])
        print(f"side against the pasted face it overlaps ({len(ratios)} boxes): 10/25/50/75/90 % "
              + " / ".join(f"{v:.2f}" for v in q)
              + f"; {int((ratios < 0.7).sum())} under 0.7, {int((ratios > 1.3).sum())} over 1.3")
    print(f"{len(false) - len(ratios)} false boxes overlap no face; {len(found['never'])} tracks never matched a "
          f"face, lasting " + ", ".join(str(len(v)) for v in sorted(found["never"].values(), key=len)) + " frames")
    if args.out:
        drawn = draw(video / "test.mp4", truth, found["never"], Path(args.out))
        print(f"{drawn} tracks drawn in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
