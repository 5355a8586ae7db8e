"""Video analyzer benchmark on a labelled test video built from real FER2013 test faces.

Builds a 640x480, 30 fps video in which one to three FER2013 test faces
(upscaled, moving, bouncing off the edges) appear, with ground-truth boxes and
labels; with ``--cut-every N`` the video is cut into shots of N frames, each
with a new background and new faces of 120-200 px. Runs the analyzer on it
against the local server (started here) and prints frames per second end to
end, time per stage, detection recall against the ground truth (IoU >= 0.4,
one to one), false boxes per frame (drawn boxes that match no face, overall
and in the first 10 frames of each shot), six-class accuracy over the faces
found beside the accuracy on the same faces' own FER2013 images, tracks that
continue across a cut or onto another face, and how often each face's heatmap
was refreshed. With ``--classes seven`` the faces are FER+ test faces (the same
FER2013 pictures) under their FER+ majority label, neutral included, and the
seven-class model is served: the benchmark of the model for ordinary footage.

    python -m benchmarks.video_benchmark                                  # the shipped model
    python -m benchmarks.video_benchmark --cut-every 15 --seconds 58 --out runs/video-bench
    python -m benchmarks.video_benchmark --cut-every 15 --seconds 58 --background textured   # walls, fabric...
    python -m benchmarks.video_benchmark --video runs/video-bench --detector mtcnn   # the same video again
    python -m benchmarks.video_benchmark --pool runs/video-bench runs/video-bench-2   # crop cost, runs together
    python -m benchmarks.video_benchmark --classes seven --cut-every 15 --seconds 58 --background textured
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.machine import describe
from clients.settings import EXPLAIN_CHOICES
from fer_keras.explain.methods import DEFAULT_METHOD

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FER2013 = REPO.parent / "shared" / "data" / "fer2013"
DEFAULT_FERPLUS = REPO.parent / "shared" / "data" / "ferplus"
# The faces of each class view: the dataset they come from and the model served by default.
FACES = {"six": ("fer2013", "gimefive-fer2013"), "seven": ("ferplus", "gimefive-ferplus")}


def face_records(root: Path, classes: str = "six", split: str = "test") -> list[tuple[str, int]]:
    """(image path, class index) of the labelled faces a video is built from: FER2013's for the six-class
    view, FER+'s (majority label) for the seven-class one; faces outside the view (FER2013's neutral,
    FER+'s contempt) are left out."""
    from fer_keras.data.taxonomy import get_taxonomy

    view = get_taxonomy(classes)
    if FACES[classes][0] == "ferplus":
        from fer_keras.data.readers.ferplus import read_ferplus as read
    else:
        from fer_keras.data.readers.fer2013 import read_fer2013 as read
    records = [(r.path, view.index(r.emotion)) for r in read(str(root))[0] if r.split == split]
    return [(path, label) for path, label in records if label is not None]


def _read_face(image: str, side: int) -> np.ndarray:
    """A dataset's face image, grey, resized to ``side`` x ``side`` as pasted into a video. ValueError naming
    the file where it does not decode (a damaged or foreign file among the dataset's images)."""
    face = cv2.imread(image, cv2.IMREAD_GRAYSCALE)
    if face is None:
        raise ValueError(f"cannot read the face image {image} (not an image, or damaged): the video is not built")
    return cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)


def build_shots(root: Path, path: Path, seconds: float, cut_every: int, fps: int = 30, seed: int = 0,
                size: tuple[int, int] = (640, 480), background: str = "blurred-noise",
                with_faces: bool = True, split: str = "test", classes: str = "six") -> list[list[dict]]:
    """A video cut into shots of ``cut_every`` frames: each shot a new background (``blurred-noise``:
    blurred noise around a new grey level; ``textured``: a texture of ``fer_keras.data.textures``, walls,
    fabric, foliage or noise, drawn at random) and one to three new FER2013 test faces of 120-200 px
    drifting apart (none with ``with_faces=False``: a face-free video, the same backgrounds); ``split``
    "train" draws training faces instead (videos to choose a setting on); ``classes`` "seven" draws FER+
    faces from the FER+ folders at ``root`` (:func:`face_records`). Returns per frame the faces' boxes,
    labels (class indices of the view), shot numbers and sources (the image, relative to ``root``)."""
    rng = np.random.default_rng(seed)
    records = face_records(root, classes, split)
    width, height = size
    frames = int(seconds * fps)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    truth: list[list[dict]] = []
    texture_rng = np.random.default_rng([seed, 28])  # apart: the same faces and paths on either background
    for shot, start in enumerate(range(0, frames, cut_every)):
        level = rng.uniform(50, 200)
        noise = rng.normal(level, rng.uniform(20, 60), (height // 8, width // 8)).astype(np.float32)
        backdrop = np.clip(cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)
        if background == "textured":
            from fer_keras.data.textures import textured_background

            backdrop, _ = textured_background(height, width, texture_rng)
        people = []
        for _ in range(int(rng.integers(1, 4))):
            side = int(rng.integers(120, 201))
            for _attempt in range(20):  # apart from the faces placed already, with room to drift
                pos = np.array([rng.uniform(0, width - side), rng.uniform(0, height - side)])
                if all(abs(pos[0] - p[0]) > (side + s) / 2 + 30 or abs(pos[1] - p[1]) > (side + s) / 2 + 30
                       for _, _, p, s, _, _ in people):
                    break
            else:
                continue
            image, label = records[int(rng.integers(len(records)))]
            face = _read_face(image, side)
            source = Path(os.path.relpath(image, root)).as_posix()
            people.append((face, label, pos, side, rng.uniform(-1.5, 1.5, 2), source))
        for f in range(start, min(frames, start + cut_every)):
            frame = backdrop.copy()
            boxes = []
            for face, label, pos, side, vel, source in people if with_faces else ():
                x, y = pos + vel * (f - start)
                xi, yi = int(np.clip(x, 0, width - side)), int(np.clip(y, 0, height - side))
                frame[yi:yi + side, xi:xi + side] = face
                boxes.append({"box": [xi, yi, side, side], "label": label, "shot": shot, "source": source})
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
            truth.append(boxes)
    writer.release()
    return truth


def build_video(root: Path, path: Path, seconds: float = 10.0, fps: int = 30, seed: int = 0,
                size: tuple[int, int] = (640, 480), classes: str = "six") -> list[list[dict]]:
    """Writes the test video and returns its ground truth: per frame, the faces' boxes and labels."""
    rng = np.random.default_rng(seed)
    records = face_records(root, classes)
    frames = int(seconds * fps)
    width, height = size
    # Faces come and go: three slots, each shows a face for 3-5 s, then may pause.
    schedule = []
    for slot in range(3):
        t = 0 if slot == 0 else int(rng.integers(0, 2 * fps))
        while t < frames:
            length = int(rng.integers(3 * fps, 5 * fps))
            image, label = records[int(rng.integers(len(records)))]
            side = int(rng.integers(110, 170))
            face = _read_face(image, side)
            pos = np.array([rng.uniform(0, width - side), rng.uniform(0, height - side)])
            vel = rng.uniform(-2.5, 2.5, 2)
            schedule.append((t, min(frames, t + length), face, label, pos, vel))
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


def clean_predictions(client, root: Path, truth: list[list[dict]]) -> dict[str, str] | None:
    """The served model's class for each pasted face's own image (FER2013's or FER+'s, under ``root``),
    resized to the model's input as the datasets are (None when the truth names no sources: a video built
    before they were recorded, or the images are not at ``root`` or do not decode)."""
    from fer_keras.data.faces import _resize

    sources = sorted({g["source"] for gt in truth for g in gt if "source" in g})
    images = [cv2.imread(str(root / s), cv2.IMREAD_GRAYSCALE) for s in sources]
    if not sources or any(image is None for image in images):
        return None
    faces = np.stack([_resize(image, client.face_size) for image in images])[..., None]
    return dict(zip(sources, client.predict(faces).labels))


def score(truth: list[list[dict]], records: list[dict], classes, region: str = "box", criterion: str = "iou",
          least_iou: float = 0.4, clean: dict[str, str] | None = None) -> dict:
    """Recall of ground-truth faces, accuracy of the classified ones, and the boxes that match no face.

    ``region`` is the face region matched against the ground truth: "box" (the
    tracked detector box) or "crop" (the square the analyzer classified).
    ``criterion`` "iou": IoU >= ``least_iou`` with the ground-truth box (the
    whole pasted FER2013 image), each box matched to one face at most;
    "centre": the region's centre lies inside the ground-truth box and its side
    is within a factor of 2 (the face was found, however its box is framed).
    Where the ground truth has shots, also: false boxes in the first 10 frames
    of a shot, tracks seen in more than one shot, and tracks that matched more
    than one face. With ``clean`` (each source image's predicted class, the face as its dataset crops it),
    also the accuracy of those predictions over the same found faces: what the pipeline's crops cost,
    overall and per true class (``per_class``: found instances, right in the video, right on their own
    images), and where the two disagree, what the wrong side said (``crop_changes``: "lost", right on the
    own image and wrong in the video, counted by "true->said in the video"; "won", the reverse, by
    "true->said on the own image"): whether the crops' errors go to one class.
    """
    from clients.tracking import iou

    match = iou if criterion == "iou" else _on_face
    least = least_iou if criterion == "iou" else 1.0
    total = found = correct = false = false_early = early_frames = clean_correct = clean_found = 0
    overlaps = []
    paired: list[tuple[tuple, int, int]] = []  # (face, right in the video, right on its own image) per instance
    per_class = {name: [0, 0, 0] for name in classes}  # found instances with a source, right in video, right own
    changes: dict[str, dict[str, int]] = {"lost": {}, "won": {}}
    shots_of_track: dict[int, set] = {}
    faces_of_track: dict[int, set] = {}
    shot_start = {}
    for index, gt in enumerate(truth):
        for g in gt:
            shot_start.setdefault(g.get("shot"), index)
    for index, (gt, record) in enumerate(zip(truth, records)):
        used = set()
        for k, g in enumerate(gt):
            total += 1
            best, best_i = 0.0, None
            for i, face in enumerate(record["faces"]):
                overlap = match(tuple(g["box"]), tuple(face[region]))
                if i not in used and overlap > best:
                    best, best_i = overlap, i
            if best >= least:
                used.add(best_i)
                found += 1
                overlaps.append(best)
                face = record["faces"][best_i]
                predicted = max(face["smoothed"].items(), key=lambda kv: kv[1])[0]
                correct += predicted == classes[g["label"]]
                if clean is not None and g.get("source") in clean:
                    clean_found += 1
                    clean_correct += clean[g["source"]] == classes[g["label"]]
                    paired.append(((g.get("shot"), k, g["source"]), int(predicted == classes[g["label"]]),
                                   int(clean[g["source"]] == classes[g["label"]])))
                    sums = per_class[classes[g["label"]]]
                    sums[0] += 1
                    sums[1] += predicted == classes[g["label"]]
                    sums[2] += clean[g["source"]] == classes[g["label"]]
                    true, own = classes[g["label"]], clean[g["source"]]
                    if (predicted == true) != (own == true):
                        side, said = ("won", own) if predicted == true else ("lost", predicted)
                        changes[side][f"{true}->{said}"] = changes[side].get(f"{true}->{said}", 0) + 1
                faces_of_track.setdefault(face.get("track"), set()).add((g.get("shot"), k))
        for face in record["faces"]:
            if gt and "shot" in gt[0]:
                shots_of_track.setdefault(face.get("track"), set()).add(gt[0]["shot"])
        unmatched = len(record["faces"]) - len(used)
        false += unmatched
        if gt and "shot" in gt[0] and index - shot_start[gt[0]["shot"]] < 10:
            false_early += unmatched
            early_frames += 1
    result = {
        "ground_truth_faces": total,
        "recall": found / max(total, 1),
        "accuracy_of_found": correct / max(found, 1),
        "false_boxes_per_frame": false / max(len(records), 1),
        "median_overlap_of_found": float(np.median(overlaps)) if overlaps else None,
    }
    if clean_found:
        result["clean_accuracy_of_found"] = clean_correct / clean_found
        result["found_with_source"] = clean_found
        result["faces_paired"] = _per_face(paired)
        result["crop_cost_interval"] = crop_cost_interval(result["faces_paired"])
        result["per_class"] = {name: sums for name, sums in per_class.items() if sums[0]}
        result["crop_changes"] = changes
    if shots_of_track:
        result.update(false_boxes_per_frame_first_10_of_shot=false_early / max(early_frames, 1),
                      tracks=len(shots_of_track),
                      tracks_across_cuts=sum(len(s) > 1 for s in shots_of_track.values()),
                      tracks_on_several_faces=sum(len(f) > 1 for f in faces_of_track.values()))
    return result


def _per_face(paired: list[tuple[tuple, int, int]]) -> list[list[int]]:
    """Per pasted face: its found instances right in the video, right on its own image, and their count."""
    faces: dict[tuple, list[int]] = {}
    for key, video, own in paired:
        sums = faces.setdefault(key, [0, 0, 0])
        sums[0], sums[1], sums[2] = sums[0] + video, sums[1] + own, sums[2] + 1
    return list(faces.values())


def crop_cost_interval(faces: list[list[int]], resamples: int = 2000, seed: int = 0) -> list[float]:
    """95 % bootstrap interval, in points, of own-image accuracy minus video accuracy over found face
    instances (``_per_face`` rows), resampling whole faces: each pasted face is seen in up to 15 frames,
    which are not independent (a face's frames mostly agree)."""
    table = np.array(faces, float)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(table), (resamples, len(table)))
    video, own, count = (table[picks, i].sum(1) for i in range(3))
    low, high = np.percentile(100 * (own - video) / count, [2.5, 97.5])
    return [round(float(low), 2), round(float(high), 2)]


def _per_class_line(per_class: dict[str, list[int]]) -> str:
    return "per class, found instances: accuracy in the video / on their own images: " + ", ".join(
        f"{name} {n}: {video / n:.3f} / {own / n:.3f}" for name, (n, video, own) in per_class.items())


def _changes_line(changes: dict[str, dict[str, int]], top: int = 5) -> str:
    """The instances the crops lost and won, each side with its most frequent true->said pairs."""
    def side(counts: dict[str, int]) -> str:
        pairs = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
        return f"{sum(counts.values())}" + (" (" + ", ".join(f"{k.replace('->', ' as ')} {n}" for k, n in pairs)
                                            + ")" if pairs else "")
    return (f"the crops' changes, found instances: right on their own image, wrong in the video "
            f"{side(changes['lost'])}; wrong on their own image, right in the video {side(changes['won'])}")


def pooled(runs: list[str]) -> int:
    """Prints the crop cost over the found faces of several runs together, with its interval, and per true
    class where every run recorded it."""
    faces, results = [], []
    for run in runs:
        path = Path(run) / "benchmark.json"
        if not path.is_file():
            print(f"error: {run} holds no benchmark.json (an --out folder of this benchmark)", file=sys.stderr)
            return 2
        result = json.loads(path.read_text())
        if "faces_paired" not in result:
            print(f"error: {run} has no per-face record (a run before the crop-cost interval, or a video "
                  "without sources)", file=sys.stderr)
            return 2
        faces += result["faces_paired"]
        results.append(result)
    table = np.array(faces, float)
    video, own = table[:, 0].sum() / table[:, 2].sum(), table[:, 1].sum() / table[:, 2].sum()
    low, high = crop_cost_interval(faces)
    print(f"{len(runs)} runs, {len(faces)} faces, {int(table[:, 2].sum())} found instances: accuracy over detected "
          f"faces {video:.3f}, on their own images {own:.3f}; the crops cost {100 * (own - video):.1f} points "
          f"(95 % interval {low:.1f} to {high:.1f}, faces resampled)")
    if all("per_class" in result for result in results):
        per_class: dict[str, list[int]] = {}
        for result in results:
            for name, sums in result["per_class"].items():
                per_class[name] = [a + b for a, b in zip(per_class.get(name, [0, 0, 0]), sums)]
        print(_per_class_line(per_class))
    if all("crop_changes" in result for result in results):
        changes: dict[str, dict[str, int]] = {"lost": {}, "won": {}}
        for result in results:
            for side, counts in result["crop_changes"].items():
                for key, n in counts.items():
                    changes[side][key] = changes[side].get(key, 0) + n
        print(_changes_line(changes))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base-path", default=None, help="served SavedModel versions (default: --pretrained)")
    p.add_argument("--fer2013", default=str(DEFAULT_FER2013), help="FER2013 Kaggle folders")
    p.add_argument("--ferplus", default=str(DEFAULT_FERPLUS), help="FER+ folders (the faces of --classes seven)")
    p.add_argument("--classes", choices=tuple(FACES), default=None,
                   help="six: FER2013 faces and labels; seven: FER+ faces under their majority label, neutral "
                        "included. Default: six, or what a --video was built with")
    p.add_argument("--seconds", type=float, default=10.0, help="video length")
    p.add_argument("--seed", type=int, default=0, help="seed of the test video (faces, sizes, paths)")
    p.add_argument("--cut-every", type=int, default=0, help="cut into shots of this many frames (0: one shot)")
    p.add_argument("--background", choices=("blurred-noise", "textured"), default="blurred-noise",
                   help="each shot's background (with --cut-every). Default: %(default)s")
    p.add_argument("--no-faces", action="store_true",
                   help="a face-free video (with --cut-every): every box drawn is a false one")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=None,
                   help="crops framed from the keypoints (--no-align: from the box). Default: the analyzer's")
    p.add_argument("--level", action=argparse.BooleanOptionalAction, default=None,
                   help="keypoint-framed crops turned to level the eyes. Default: the analyzer's")
    p.add_argument("--no-verify", action="store_true",
                   help="BlazeFace alone: no O-Net verification and no second look")
    p.add_argument("--no-second-look", action="store_true",
                   help="BlazeFace verified but without its second look")
    p.add_argument("--second-look-model", choices=("back", "short", "full"), default=None,
                   help="the BlazeFace model that looks first in each second-look window, the rear model where "
                        "it finds no face. Default: the rear model alone")
    p.add_argument("--verify-box-only", action="store_true",
                   help="O-Net verifies BlazeFace's own box alone, not also its FER2013 framing")
    p.add_argument("--video", default=None, help="reuse the test.mp4 and truth.json in this folder")
    p.add_argument("--pretrained", default=None,
                   help="shipped model served when --model-base-path is not given. Default: gimefive-fer2013, "
                        "gimefive-ferplus with --classes seven")
    p.add_argument("--detector", default=None, help="mtcnn, haar, blazeface (default: the analyzer's)")
    p.add_argument("--explain", default=DEFAULT_METHOD, choices=EXPLAIN_CHOICES,
                   help="served explanation method. Default: %(default)s (the analyzer's)")
    p.add_argument("--detect-every", type=int, default=5)
    p.add_argument("--explain-every", type=int, default=10)
    p.add_argument("--batch-frames", type=int, default=8)
    p.add_argument("--margin", type=float, default=None, help="crop margin (default: the analyzer's)")
    p.add_argument("--box-smoothing", type=float, default=None, help="track box smoothing (default: the analyzer's)")
    p.add_argument("--smoothing", type=float, default=None,
                   help="weight of the newest frame in each track's moving average of probabilities, the class "
                        "scored (1 = none; default: the analyzer's)")
    p.add_argument("--confirm-score", type=float, default=None, help="(default: the detector's)")
    p.add_argument("--candidate-threshold", type=float, default=None,
                   help="MTCNN P-Net/R-Net threshold (default: the detector's)")
    p.add_argument("--model-file", default=None,
                   help="classify with this LiteRT file on this machine (clients.edge) instead of a served model; "
                        "it carries no explanation: with --explain none")
    p.add_argument("--out", default=None, help="keep the video, JSON lines and summary here")
    p.add_argument("--pool", nargs="+", default=None, metavar="RUN",
                   help="run nothing: the crop cost over the found faces of these --out folders together")
    args = p.parse_args(argv)
    if args.pool:
        return pooled(args.pool)
    if args.model_file and (args.explain != "none" or args.model_base_path):
        print("error: --model-file goes with --explain none and without --model-base-path", file=sys.stderr)
        return 2
    if (args.no_faces or args.background != "blurred-noise") and not (args.cut_every and not args.video):
        print("error: --no-faces and --background build a video of shots: they need --cut-every (and no --video)",
              file=sys.stderr)
        return 2
    blazeface_only = [f for f, on in (("--no-verify", args.no_verify), ("--no-second-look", args.no_second_look),
                                      ("--verify-box-only", args.verify_box_only),
                                      ("--second-look-model", args.second_look_model is not None)) if on]
    if args.second_look_model and (args.no_verify or args.no_second_look):
        print("error: --second-look-model chooses the second look's model; it does not go with --no-verify or "
              "--no-second-look", file=sys.stderr)
        return 2
    if blazeface_only and args.detector not in (None, "blazeface"):
        print(f"error: {', '.join(blazeface_only)} change BlazeFace; they do not go with --detector {args.detector}",
              file=sys.stderr)
        return 2
    if args.video:
        meta = Path(args.video) / "video.json"  # absent for videos built before --classes: six-class
        classes = json.loads(meta.read_text())["classes"] if meta.is_file() else "six"
        if args.classes not in (None, classes):
            print(f"error: the video in {args.video} was built with --classes {classes}, not {args.classes}",
                  file=sys.stderr)
            return 2
        args.classes = classes
    args.classes = args.classes or "six"
    dataset, args.pretrained = FACES[args.classes][0], args.pretrained or FACES[args.classes][1]
    faces_root = Path(args.ferplus if dataset == "ferplus" else args.fer2013)
    if not (faces_root / ("FER2013Test" if dataset == "ferplus" else "test")).is_dir():
        print(f"{'FER+' if dataset == 'ferplus' else 'FER2013'} not found at {faces_root}", file=sys.stderr)
        return 2
    from clients.analyzer import AnalyzerConfig, VideoAnalyzer
    from clients.client import EmotionClient
    from clients.sources import open_source
    from fer_keras.data.taxonomy import get_taxonomy
    from serving.local.embedded import start_embedded_server

    out = Path(args.out or tempfile.mkdtemp(prefix="video-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.video:
        video = Path(args.video) / "test.mp4"
        truth = json.loads((Path(args.video) / "truth.json").read_text())
    else:
        video = out / "test.mp4"
        try:
            if args.cut_every:
                truth = build_shots(faces_root, video, args.seconds, args.cut_every, seed=args.seed,
                                    background=args.background, with_faces=not args.no_faces, classes=args.classes)
            else:
                truth = build_video(faces_root, video, args.seconds, seed=args.seed, classes=args.classes)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        (out / "truth.json").write_text(json.dumps(truth))
        (out / "video.json").write_text(json.dumps({"classes": args.classes}))
    base = args.model_base_path
    if base is None and not args.model_file:
        from fer_keras.exporting import serving_base

        base = str(serving_base(args.pretrained))
    server = start_embedded_server("gimefive", base) if not args.model_file else None
    try:
        if args.model_file:
            from clients.edge import LiteRTClient

            client = LiteRTClient(args.model_file)
        else:
            client = EmotionClient(server.address, "gimefive")
        if tuple(client.classes) != get_taxonomy(args.classes).classes:
            print(f"error: the video's faces are labelled in the {args.classes}-class view, the model classifies "
                  f"{', '.join(client.classes)}", file=sys.stderr)
            return 2
        tuned = {k: v for k, v in (("margin", args.margin), ("box_smoothing", args.box_smoothing),
                                   ("smoothing", args.smoothing),
                                   ("detector", args.detector), ("confirm_score", args.confirm_score),
                                   ("align", args.align), ("level", args.level)) if v is not None}
        try:
            config = AnalyzerConfig(detect_every=args.detect_every, explain=args.explain,
                                    explain_every=args.explain_every, batch_frames=args.batch_frames, **tuned)
        except ValueError as exc:  # a setting out of range
            print(f"error: {exc}", file=sys.stderr)
            return 2
        detector = None
        if args.no_verify or args.no_second_look or args.verify_box_only or args.second_look_model:
            from fer_keras.detection import BlazeFaceDetector

            options = {"verify": None} if args.no_verify else {}
            if args.second_look_model:
                options["second_look_model"] = args.second_look_model
            if args.no_verify or args.no_second_look:
                options["second_look"] = None
            detector = BlazeFaceDetector(**options, verify_framed=not args.verify_box_only)
        elif args.candidate_threshold is not None and args.detector == "mtcnn":
            from fer_keras.detection import MTCNNDetector

            detector = MTCNNDetector(candidate_threshold=args.candidate_threshold)
        analyzer = VideoAnalyzer(client, config, detector=detector)
        summary = analyzer.run(open_source(str(video)), video_out=out / "annotated.mp4",
                               jsonl=out / "frames.jsonl", progress=False)
        clean = clean_predictions(client, faces_root, truth)
    finally:
        if server is not None:
            server.stop(grace=1.0)
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    quality = score(truth, records, client.classes, clean=clean)
    cropped = score(truth, records, client.classes, region="crop")
    centred = score(truth, records, client.classes, region="crop", criterion="centre")
    refreshes = sum("explanation" in f for r in records for f in r["faces"])
    face_seconds = sum(len(r["faces"]) for r in records) / 30.0
    every_frame = all(len(r["faces"]) >= 1 for r, gt in zip(records, truth) if gt)
    print(f"machine: {describe()}")
    shots = len({g.get("shot") for gt in truth for g in gt})
    print(
        f"video: {len(records)} frames 640x480 @30 fps, {shots} shot(s), {quality['ground_truth_faces']} face "
        f"instances; detector {config.detector} every {args.detect_every} frames, explanations "
        f"{args.explain + ' every ' + str(args.explain_every) + ' frames' if args.explain != 'none' else 'off'}; "
        f"crop margin {config.margin}, box smoothing {config.box_smoothing}, probability smoothing "
        f"{config.smoothing}, crops from "
        f"{('the keypoints, levelled' if config.level else 'the keypoints') if config.align else 'the box'}"
        f"{', BlazeFace unverified' if args.no_verify else ''}"
        f"{', BlazeFace without its second look' if args.no_second_look else ''}"
        f"{', the ' + args.second_look_model + ' model looking first' if args.second_look_model else ''}"
        f"{', O-Net on the box alone' if args.verify_box_only else ''}"
        f"; cuts found: {len(summary.get('cuts', []))}"
    )
    print(f"classifier: {args.model_file or 'served ' + (args.model_base_path or args.pretrained)}")
    print(f"end to end: {summary['frames_per_second']} frames/s")
    print("stage ms/frame: " + ", ".join(f"{k} {v}" for k, v in summary["stage_ms_per_frame"].items()))
    if summary.get("detect_ms_per_frame"):
        print("  of which detect: " + ", ".join(f"{k} {v}" for k, v in summary["detect_ms_per_frame"].items()))
    print(
        f"drawn boxes: recall@IoU0.4 {quality['recall']:.3f}, "
        f"false boxes per frame {quality['false_boxes_per_frame']:.3f}; "
        f"{args.classes}-class accuracy over detected faces {quality['accuracy_of_found']:.3f}; "
        f"median IoU of the found "
        f"{quality['median_overlap_of_found'] or float('nan'):.3f}"
    )
    if "clean_accuracy_of_found" in quality:
        print(f"the same found faces, each classified from its own {FACES[args.classes][0]} image "
              f"(the dataset's crop): accuracy "
              f"{quality['clean_accuracy_of_found']:.3f}; the pipeline's crops cost "
              f"{100 * (quality['clean_accuracy_of_found'] - quality['accuracy_of_found']):.1f} points (95 % interval "
              f"{quality['crop_cost_interval'][0]:.1f} to {quality['crop_cost_interval'][1]:.1f}, faces resampled)")
    if "per_class" in quality:
        print(_per_class_line(quality["per_class"]))
        print(_changes_line(quality["crop_changes"]))
    if "tracks" in quality:
        print(f"shots: false boxes per frame in the first 10 frames of a shot "
              f"{quality['false_boxes_per_frame_first_10_of_shot']:.3f}; {quality['tracks']} tracks, "
              f"{quality['tracks_across_cuts']} across a cut, {quality['tracks_on_several_faces']} on several faces")
    print(f"classified crops: recall@IoU0.4 {cropped['recall']:.3f}; "
          f"{args.classes}-class accuracy of found faces: {cropped['accuracy_of_found']:.3f}")
    print(f"faces found (crop centre inside the ground truth, side within 2x): {centred['recall']:.3f}; "
          f"{args.classes}-class accuracy of found faces: {centred['accuracy_of_found']:.3f}")
    print(f"heatmap refreshes per face per second: {refreshes / max(face_seconds, 1e-9):.2f}; "
          f"a face classified in every frame that has one: {every_frame}")
    (out / "benchmark.json").write_text(
        json.dumps(
            {
                "summary": summary,
                **quality,
                "with_crop": cropped,
                "centre_in_truth": centred,
                "heatmap_refreshes_per_face_second": refreshes / max(face_seconds, 1e-9),
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
