"""``python -m fer_keras.robustness``: accuracy under controlled shifts, side by side with clean accuracy.

Held-out faces (a split of ``--data``) are classified as they are, then under
each shift of ``fer_keras.data.shifts`` at severities 1-5 (framing, tilt,
resolution, blur, JPEG, noise, light, occluders), and as the project's own
detectors crop them out of scenes: the faces are upscaled to 60-250 px, pasted
into 640x480 frames (JPEG-compressed like a video frame) over blurred noise
(``detector-NAME``) or over textures, walls, fabric and foliage
(``textured-NAME``), or framed one per portrait photograph at 110-350 px
(``photo-NAME``), found by the detector and cropped as the video client crops
them. For detector crops the accuracy over the faces found is compared with
the clean accuracy on the same faces.
Other sources given with ``--cross`` are evaluated in full (every image).

Every model sees the very same shifted faces (seeded per face). Output: a
table on stdout, ``robustness.json`` and ``robustness.png`` (accuracy against
severity per shift, one line per model) in ``--out``. With ``--out`` each
finished row is kept in ``robustness.partial.json`` as the run goes: the same
command run again after a stop takes those rows and computes the rest (only
for the very same weights, faces and settings; the file goes when the report
is written). Two models on 1,000 faces had done 19 of the 24 rows after 86
minutes on two cores shared with a training run; MTCNN's rows are the slowest.

Examples::

    python -m fer_keras.robustness --model gimefive-fer2013 --data fer2013=../shared/data/fer2013 --out runs/robustness
    python -m fer_keras.robustness --model gimefive-fer2013 runs/fer2013-robust/best.keras \\
        --data fer2013=../shared/data/fer2013 --shifts loose,blur,detector-mtcnn --severities 1,3,5
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fer_keras.cli import add_data_arguments, data_config
from fer_keras.data.readers.common import DatasetError
from fer_keras.data.shifts import MAX_SEVERITY, SHIFTS, apply_shift
from fer_keras.detection import LEVEL_EYES

DETECTOR_PREFIX = "detector-"
# Scene shifts: a prefix and the detector's name; the prefix names the scenes' background.
SCENE_BACKGROUNDS = {DETECTOR_PREFIX: "blurred-noise", "textured-": "textured", "photo-": "photo"}
# Face sizes (pixels) in the 640x480 scenes at severities 1-5.
SCENE_SIZES = (250, 200, 150, 100, 60)
SCENE = (640, 480)
# Portrait photographs (480x640, one face each, on a texture, JPEG quality 85): the face's side at
# severities 1-5, from a head-and-shoulders portrait to a person seen at a few metres.
PHOTO_SIZES = (350, 290, 230, 170, 110)
PHOTO = (480, 640)


def scene_sizes(background: str) -> tuple[int, ...]:
    """The face sizes (px) of severities 1-5 in a scene with this background."""
    return PHOTO_SIZES if background == "photo" else SCENE_SIZES


def detector_shifts() -> tuple[str, ...]:
    from fer_keras.detection import DETECTORS

    return tuple(prefix + name for prefix in SCENE_BACKGROUNDS for name in DETECTORS if name != "none")


def scene_shift(name: str) -> tuple[str, str] | None:
    """``(detector, background)`` of a scene shift (``detector-NAME``, ``textured-NAME``); None for an image shift."""
    for prefix, background in SCENE_BACKGROUNDS.items():
        if name.startswith(prefix):
            return name[len(prefix):], background
    return None


def parse_shifts(text: str) -> list[str]:
    """``all`` or a comma list of shift names (``fer_keras.data.shifts.SHIFTS`` and ``detector-NAME``)."""
    known = tuple(SHIFTS) + detector_shifts()
    names = list(known) if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"unknown shift(s) {unknown or [text]}; choose from: all, {', '.join(known)}")
    return names


def parse_severities(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ValueError(f"--severities {text!r}: expected integers such as 1,3,5") from None
    bad = [v for v in values if not 1 <= v <= MAX_SEVERITY]
    if bad or not values:
        raise ValueError(f"--severities {text!r}: each severity must be 1 to {MAX_SEVERITY}")
    return values


@dataclass
class Scored:
    """A model ready to score faces: its predict function and the flip-TTA choice."""

    name: str
    model: object
    flip_tta: bool

    def predict(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        from fer_keras.evaluation import predict_probabilities

        if len(images) == 0:
            return np.zeros((0,), np.int64)
        return predict_probabilities(self.model, images, batch_size, self.flip_tta).argmax(1)


def _flip_choice(name: str, mode: str) -> bool:
    """``on``/``off``, or ``auto``: what a shipped model ships with, or what the training run chose."""
    if mode != "auto":
        return mode == "on"
    from fer_keras import pretrained

    if name in pretrained.available():
        return bool(pretrained.info(name).get("flip_tta", False))
    metrics = Path(name).parent / "metrics.json"
    if Path(name).suffix == ".keras" and metrics.is_file():
        return bool(json.loads(metrics.read_text()).get("flip_tta", False))
    return False


def subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of about ``n`` faces, the same share of every class (all when ``n`` is 0 or too large)."""
    if n <= 0 or n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        take = max(1, int(round(n * len(idx) / len(labels))))
        picked.extend(rng.choice(idx, size=min(take, len(idx)), replace=False).tolist())
    return np.array(sorted(picked))


def scene_frames(images: np.ndarray, side: int, seed: int,
                 background: str = "blurred-noise") -> list[tuple[np.ndarray, list[tuple[int, tuple]]]]:
    """The faces upscaled to ``side`` pixels and pasted (on a grid, jittered) into 640x480 RGB frames over
    a background, each frame JPEG-compressed at quality 75 as a video frame would be.

    ``background``: ``blurred-noise`` (smooth blotches, on which detectors stay quiet), ``textured``
    (each frame one of ``fer_keras.data.textures.TEXTURES``: noise at three grains, fabric, brick,
    foliage, drawn at random), or ``photo``: a photograph's framing instead of a video frame's, one
    face per 480x640 portrait frame, horizontally near the centre and a little above the middle, on a
    texture, JPEG quality 85.

    Returns:
        ``(frame, [(face index, (x, y, side, side)), ...])`` per frame.
    """
    if background == "photo":
        return _photo_frames(images, side, seed)
    width, height = SCENE
    rng = np.random.default_rng([seed, side])
    texture_rng = np.random.default_rng([seed, side, 1])  # textures apart: the same places on any background
    cell = int(side * 1.35)
    cols, rows = max(1, width // cell), max(1, height // cell)
    per_frame = cols * rows
    out = []
    for start in range(0, len(images), per_frame):
        if background == "textured":
            from fer_keras.data.textures import textured_background

            bg, _ = textured_background(height, width, texture_rng)
            rng.integers(30, 220, (height, width), dtype=np.uint8)  # the blurred noise's draw, kept in step
        elif background == "blurred-noise":
            bg = cv2.GaussianBlur(rng.integers(30, 220, (height, width), dtype=np.uint8), (0, 0), 20)
        else:
            raise ValueError(f"unknown scene background {background!r}; choose from: blurred-noise, textured, photo")
        frame = bg.copy()
        placed = []
        for k, i in enumerate(range(start, min(start + per_frame, len(images)))):
            r, c = divmod(k, cols)
            slack_x, slack_y = max(0, width // cols - side), max(0, height // rows - side)
            x = c * (width // cols) + int(rng.integers(0, slack_x + 1))
            y = r * (height // rows) + int(rng.integers(0, slack_y + 1))
            x, y = min(x, width - side), min(y, height - side)
            face = cv2.resize(images[i, ..., 0], (side, side), interpolation=cv2.INTER_CUBIC)
            frame[y:y + side, x:x + side] = face
            placed.append((i, (x, y, side, side)))
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 75])
        frame = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        out.append((cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), placed))
    return out


def _photo_frames(images: np.ndarray, side: int, seed: int) -> list[tuple[np.ndarray, list[tuple[int, tuple]]]]:
    from fer_keras.data.textures import textured_background

    width, height = PHOTO
    rng = np.random.default_rng([seed, side, 2])
    out = []
    for i in range(len(images)):
        frame, _ = textured_background(height, width, rng)
        x = int(np.clip((width - side) / 2 + rng.uniform(-0.1, 0.1) * width, 0, width - side))
        y = int(np.clip(0.4 * height - side / 2 + rng.uniform(-0.06, 0.06) * height, 0, height - side))
        frame[y:y + side, x:x + side] = cv2.resize(images[i, ..., 0], (side, side), interpolation=cv2.INTER_CUBIC)
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
        frame = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
        out.append((cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB), [(i, (x, y, side, side))]))
    return out


def detector_crops(images: np.ndarray, detector, side: int, face_size: int, seed: int,
                   min_iou: float = 0.4, background: str = "blurred-noise",
                   align: bool = False, level: bool = LEVEL_EYES) -> tuple[np.ndarray, np.ndarray]:
    """Crops ``detector`` makes of the faces pasted at ``side`` pixels, as the video client cuts them.

    Returns:
        (indices of the faces found, their crops ``[n, face_size, face_size, 1]``); each pasted face is
        matched to at most one detection (the best IoU, at least ``min_iou``).
    """
    from fer_keras.detection import crop_face, iou

    found, crops = [], []
    for frame, placed in scene_frames(images, side, seed, background):
        detections = detector.detect(frame)
        used = set()
        for index, box in placed:
            scores = [(iou(box, d.box), j) for j, d in enumerate(detections) if j not in used]
            best = max(scores, default=(0.0, -1))
            if best[0] >= min_iou:
                used.add(best[1])
                found.append(index)
                crops.append(crop_face(frame, detections[best[1]], face_size, align=align, level=level))
    if not crops:
        return np.zeros((0,), np.int64), np.zeros((0, face_size, face_size, 1), np.uint8)
    return np.array(found), np.stack(crops)


def run_report(models: list[Scored], faces, shifts: list[str], severities: list[int], *, seed: int = 0,
               batch_size: int = 128, detector_faces: int = 300, cross: dict | None = None,
               log=print, align: bool = False, level: bool = LEVEL_EYES, done: dict | None = None,
               save=None) -> dict:
    """The robustness report of ``models`` on ``faces`` (a FaceSet) as a JSON-able dict.

    ``done`` is an earlier, unfinished report of the same models, faces and settings: its finished rows
    are taken as they are (the module's docstring gives the time a 1,000-face report takes).
    ``save(report)`` is called after each row, so an interrupted run loses one row at most.
    """
    labels = faces.labels
    size = faces.images.shape[1]
    report = {"n": int(len(faces)), "classes": list(faces.taxonomy.classes), "severities": severities, "seed": seed,
              "align": align, "level": level, "models": {}, "shifts": {}}
    clean_pred = {}
    for m in models:
        clean_pred[m.name] = m.predict(faces.images, batch_size)
        report["models"][m.name] = {"flip_tta": m.flip_tta, "clean": float((clean_pred[m.name] == labels).mean()),
                                    "shifts": {}}
    for name in shifts:
        if done and name in done.get("shifts", {}) and all(
                name in done["models"].get(m.name, {}).get("shifts", {}) for m in models):
            report["shifts"][name] = done["shifts"][name]
            for m in models:
                report["models"][m.name]["shifts"][name] = done["models"][m.name]["shifts"][name]
            log(f"  {name}: taken from the unfinished report")
            continue
        if scene_shift(name):
            from fer_keras.detection import make_detector

            detector_name, background = scene_shift(name)
            detector = make_detector(detector_name)
            chosen = subsample(labels, detector_faces, seed)
            report["shifts"][name] = {"group": f"detector crops, {background} scenes",
                                      "unit": "face side in the scene (px)",
                                      "levels": [scene_sizes(background)[s - 1] for s in severities],
                                      "n": int(len(chosen)),
                                      "detected": []}
            for m in models:
                report["models"][m.name]["shifts"][name] = {"accuracy": [], "clean_same_faces": []}
            sizes = scene_sizes(background)
            for s in severities:
                found, crops = detector_crops(faces.images[chosen], detector, sizes[s - 1], size, seed,
                                              background=background, align=align, level=level)
                report["shifts"][name]["detected"].append(len(found) / max(1, len(chosen)))
                truth = labels[chosen][found]
                for m in models:
                    entry = report["models"][m.name]["shifts"][name]
                    acc = float((m.predict(crops, batch_size) == truth).mean()) if len(found) else None
                    entry["accuracy"].append(acc)
                    entry["clean_same_faces"].append(float((clean_pred[m.name][chosen][found] == truth).mean())
                                                     if len(found) else None)
                log(f"  {name} severity {s} ({scene_sizes(background)[s - 1]} px): found {len(found)}/{len(chosen)}")
            if save:
                save(report)
            continue
        shift = SHIFTS[name]
        report["shifts"][name] = {"group": shift.group, "unit": shift.unit,
                                  "levels": [shift.levels[s - 1] for s in severities], "n": int(len(faces))}
        for m in models:
            report["models"][m.name]["shifts"][name] = {"accuracy": []}
        for s in severities:
            shifted = apply_shift(faces.images, name, s, seed)
            for m in models:
                acc = float((m.predict(shifted, batch_size) == labels).mean())
                report["models"][m.name]["shifts"][name]["accuracy"].append(acc)
        log(f"  {name}: " + ", ".join(f"{m.name} {np.mean(report['models'][m.name]['shifts'][name]['accuracy']):.3f}"
                                     for m in models))
        if save:
            save(report)
    for source, cross_faces in (cross or {}).items():
        for m in models:
            predicted = m.predict(cross_faces.images, batch_size)
            from fer_keras.evaluation import classification_report

            cr = classification_report(cross_faces.labels, predicted, cross_faces.taxonomy.classes)
            report["models"][m.name].setdefault("cross", {})[source] = {
                "n": cr["n"], "accuracy": cr["accuracy"], "macro_f1": cr["macro_f1"],
                "recall": {c: v["recall"] for c, v in cr["per_class"].items()},
                "precision": {c: v["precision"] for c, v in cr["per_class"].items()}}
    for m in models:
        summarise(report["models"][m.name])
    return report


def summarise(entry: dict) -> None:
    """Adds the suite mean (every shift's mean over its severities, averaged), and for detector shifts the
    gap between clean accuracy on the faces found and accuracy on the detector's crops."""
    means = {}
    for name, cell in entry["shifts"].items():
        values = [v for v in cell["accuracy"] if v is not None]
        means[name] = float(np.mean(values)) if values else None
        if "clean_same_faces" in cell:
            pairs = [(c, a) for c, a in zip(cell["clean_same_faces"], cell["accuracy"]) if a is not None]
            cell["gap"] = float(np.mean([c - a for c, a in pairs])) if pairs else None
    entry["shift_means"] = means
    present = [v for v in means.values() if v is not None]
    entry["suite_mean"] = float(np.mean(present)) if present else None


def format_table(report: dict) -> str:
    severities = report["severities"]
    lines = []
    for model, entry in report["models"].items():
        lines.append(f"{model} (flip TTA {'on' if entry['flip_tta'] else 'off'}): clean accuracy {entry['clean']:.4f} "
                     f"on {report['n']} faces; mean over the shift suite {entry['suite_mean']:.4f}")
        header = f"  {'shift':<20}" + "".join(f"{'sev ' + str(s):>9}" for s in severities) + f"{'mean':>9}"
        lines.append(header)
        for name, cell in entry["shifts"].items():
            row = "".join(f"{v:9.3f}" if v is not None else f"{'-':>9}" for v in cell["accuracy"])
            mean = entry["shift_means"][name]
            extra = ""
            if "gap" in cell and cell["gap"] is not None:
                found = ", ".join(f"{d:.0%}" for d in report["shifts"][name]["detected"])
                gap = cell["gap"] * 100
                side = "below" if gap >= 0 else "above"
                extra = f"   {abs(gap):.1f} pts {side} clean on the same faces; found {found}"
            lines.append(f"  {name:<20}{row}{mean:9.3f}{extra}" if mean is not None else f"  {name:<20}{row}")
        for label, (by_level, mean) in severity_means(entry).items():
            row = "".join(f"{v:9.3f}" if v is not None else f"{'-':>9}" for v in by_level)
            lines.append(f"  {label:<20}{row}{mean:9.3f}")
        for source, cross in entry.get("cross", {}).items():
            weak = sorted(cross["recall"].items(), key=lambda kv: kv[1])[:2]
            lines.append(f"  {'cross ' + source:<20} accuracy {cross['accuracy']:.3f} on {cross['n']} faces, "
                         f"macro-F1 {cross['macro_f1']:.3f}; weakest recall: "
                         + ", ".join(f"{c} {v:.2f}" for c, v in weak))
        lines.append("")
    lines.extend(compare_lines(report))
    return "\n".join(lines)


def severity_means(entry: dict) -> dict[str, tuple[list[float | None], float]]:
    """Over the image shifts and, apart, over the detector rows (those with a clean accuracy on the same
    faces): the mean accuracy at each severity, and the mean of the rows' means. A model that gains only at
    the upper severities holds up under large shifts but not under the small ones a camera mostly gives."""
    groups = {"image shifts, mean": [n for n, c in entry["shifts"].items() if "clean_same_faces" not in c],
              "detector rows, mean": [n for n, c in entry["shifts"].items() if "clean_same_faces" in c]}
    out = {}
    for label, names in groups.items():
        means = [entry["shift_means"][n] for n in names if entry["shift_means"][n] is not None]
        if len(names) < 2 or not means:  # one row's mean is the row itself
            continue
        levels = zip(*(entry["shifts"][n]["accuracy"] for n in names))
        by_level = [float(np.mean(kept)) if (kept := [v for v in level if v is not None]) else None
                    for level in levels]
        out[label] = (by_level, float(np.mean(means)))
    return out


def compare_lines(report: dict) -> list[str]:
    """With two or more models, each one's change against the first: clean accuracy, suite mean, and what
    the shifts cost it (clean minus suite mean). A suite gain is the sum of a clean gain and a smaller
    cost, so the cost says how much of a model's gain under shifts is robustness."""
    names = list(report["models"])
    if len(names) < 2 or any(report["models"][n]["suite_mean"] is None for n in names):
        return []
    base = report["models"][names[0]]
    lines = [f"against {names[0]} (shifts cost it {(base['clean'] - base['suite_mean']) * 100:.1f} pts):"]
    for name in names[1:]:
        entry = report["models"][name]
        lines.append(f"  {name}: clean {(entry['clean'] - base['clean']) * 100:+.1f} pts, suite mean "
                     f"{(entry['suite_mean'] - base['suite_mean']) * 100:+.1f} pts; shifts cost it "
                     f"{(entry['clean'] - entry['suite_mean']) * 100:.1f} pts")
    return lines + [""]


def _short_name(model: str) -> str:
    """A legend name: a run's checkpoint as ``run/best.keras``, other paths by their last part."""
    p = Path(model)
    return f"{p.parent.name}/{p.name}" if p.suffix == ".keras" and p.parent.name else p.name


def plot_report(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["shifts"])
    cols = min(5, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        for k, (model, entry) in enumerate(report["models"].items()):
            values = [np.nan if v is None else v for v in entry["shifts"][name]["accuracy"]]
            line, = ax.plot(report["severities"], values, marker="o", label=_short_name(model) if k < 10 else None)
            ax.axhline(entry["clean"], color=line.get_color(), linestyle=":", linewidth=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(report["severities"])
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in axes[-1, :]:
        ax.set_xlabel("severity")
    axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("Accuracy under shifts (dotted: clean accuracy)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.robustness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, nargs="+",
                   help="one or more models (.keras, SavedModel folder or shipped name), each reported on its own")
    add_data_arguments(p)
    p.set_defaults(classes=None)
    p.add_argument("--split", choices=("test", "val", "all"), default="test",
                   help="faces to shift: a split of --data, or all of its faces. Default: %(default)s")
    p.add_argument("--shifts", default="all",
                   help=f"comma-separated shifts, or all: {', '.join(SHIFTS)}, and for each detector (blazeface, "
                        "mtcnn, haar) detector-NAME (scenes over blurred noise), textured-NAME (over textures) and "
                        "photo-NAME (portrait photographs). Default: %(default)s")
    p.add_argument("--level", action=argparse.BooleanOptionalAction, default=LEVEL_EYES,
                   help="with --align: also turn each detector crop to level the eyes (levelled crops scored "
                        "lower: BENCHMARKS.md). Default: %(default)s")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="cut detector crops framed from the keypoints (scaled and centred as FER2013; "
                        "fer_keras.detection.keypoint_square), as the video client does; --no-align: from the "
                        "detector's box. Default: %(default)s")
    p.add_argument("--severities", default="1,2,3,4,5", help="severities 1 (mild) to 5. Default: %(default)s")
    p.add_argument("--faces", type=int, default=0, help="use about this many faces, every class in proportion (0: all)")
    p.add_argument("--detector-faces", type=int, default=300,
                   help="faces pasted into scenes for each detector shift (detection is slow). Default: %(default)s")
    p.add_argument("--cross-detect", action="store_true",
                   help="--cross sources are whole photographs: find the face in each first (verified BlazeFace, "
                        "keypoint framing as --align says), as the video client does, and count the images with none")
    p.add_argument("--cross", action="append", default=[], metavar="NAME=PATH",
                   help="another source evaluated in full (every image, no split), repeatable")
    p.add_argument("--flip-tta", choices=("auto", "on", "off"), default="auto",
                   help="auto: as the shipped model ships, or as its training run chose. Default: %(default)s")
    p.add_argument("--batch-size", type=int, default=128, help="prediction batch size. Default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="seed of carved splits and of the shifts. Default: %(default)s")
    p.add_argument("--out", default=None, help="folder for robustness.json and robustness.png")
    return p


PARTIAL = "robustness.partial.json"  # the rows finished so far, with the settings they were made with


def weights_fingerprint(model) -> str:
    """SHA-256 of a model's weights: a partial report is resumed only for the very same weights."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()


def report_settings(args, models: list[Scored], view: str, primary: list[str]) -> dict:
    """Everything a report's figures depend on; an unfinished report is resumed only where they all match."""
    data = dataclasses.asdict(data_config(args, args.seed, classes=view, sources=primary))
    return json.loads(json.dumps({
        "models": [[m.name, m.flip_tta, weights_fingerprint(m.model)] for m in models], "data": data,
        "split": args.split, "faces": args.faces, "seed": args.seed, "severities": parse_severities(args.severities),
        "align": args.align, "level": args.level, "detector_faces": args.detector_faces}))  # as read back


def load_split(args, classes: str, spec: list[str], split: str):
    from fer_keras.data.sources import load_data

    config = data_config(args, args.seed, classes=classes, sources=spec)
    data = load_data(config, require_train=split != "train", progress=False)
    if split == "all":
        return data.all_faces()
    if split not in data.splits:
        raise DatasetError(f"{', '.join(spec) or 'synthetic'} has no {split} split (it has {', '.join(data.splits)})")
    return data.splits[split]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    try:
        shifts = parse_shifts(args.shifts)
        severities = parse_severities(args.severities)
        if len(set(args.model)) < len(args.model):
            raise ValueError(f"--model names a model more than once: {' '.join(args.model)}")
        loaded = [(name, load_classifier(name)) for name in args.model]
        views = {name: infer_taxonomy(model).name for name, model in loaded}
        if len(set(views.values())) > 1:
            raise ValueError(f"the models have different class views: {views}")
        view = next(iter(views.values()))
        if args.classes and args.classes != view:
            raise ValueError(f"--classes {args.classes}: the model(s) have the {view}-class view ({views})")
        models = [Scored(name, model, _flip_choice(name, args.flip_tta)) for name, model in loaded]
        sizes = {tuple(getattr(m, "input_shape", (None, None))[1:3]) for _, m in loaded}
        primary, cross_specs = list(args.data), list(args.cross)
        faces = load_split(args, view, primary, args.split)
        side = faces.images.shape[1]
        if any(s[0] not in (None, side) for s in sizes):
            raise ValueError(f"the model(s) take faces of {sorted(sizes)} pixels; pass --image-size to match")
        if len(faces) == 0:
            raise DatasetError(f"{', '.join(primary) or 'synthetic'} has no faces in its {args.split} split")
        faces = faces.select(subsample(faces.labels, args.faces, args.seed))
        cross, no_face = {}, {}
        for spec in cross_specs:
            name = spec.split("=", 1)[0]
            cross[name] = load_split(args, view, [spec], "all")
            if len(cross[name]) == 0:
                raise DatasetError(f"--cross {spec}: no faces of the {view}-class view")
            if args.cross_detect:
                from fer_keras.detection import make_detector
                from fer_keras.evaluation import crop_detected_faces

                total = len(cross[name])
                cross[name], missing = crop_detected_faces(cross[name], make_detector("blazeface"), align=args.align,
                                                               level=args.level)
                no_face[name] = {"images": total, "no_face": len(missing)}
                print(f"--cross {name}: a face in {len(cross[name])} of {total} images", file=sys.stderr)
                if not len(cross[name]):
                    raise DatasetError(f"--cross {spec}: no face found in any image")
        print(f"{len(faces)} faces ({args.split}), {len(shifts)} shifts x {len(severities)} severities, "
              f"{len(models)} model(s)", file=sys.stderr)
        done, save = None, None
        if args.out:
            partial = Path(args.out) / PARTIAL
            settings = report_settings(args, models, view, primary)
            if partial.is_file():
                try:
                    earlier = json.loads(partial.read_text())
                except ValueError:
                    earlier = {}  # unreadable: its rows are computed again
                if earlier.get("settings") == settings and "report" in earlier:
                    done = earlier["report"]
                    print(f"resuming {partial}: {len(done['shifts'])} rows done", file=sys.stderr)
                else:
                    print(f"{partial} was made with other models, faces or settings: starting afresh",
                          file=sys.stderr)

            def save(report):
                partial.parent.mkdir(parents=True, exist_ok=True)
                partial.with_suffix(".tmp").write_text(json.dumps({"settings": settings, "report": report}))
                partial.with_suffix(".tmp").replace(partial)

        report = run_report(models, faces, shifts, severities, seed=args.seed, batch_size=args.batch_size,
                            detector_faces=args.detector_faces, cross=cross,
                            log=lambda text: print(text, file=sys.stderr), align=args.align, level=args.level,
                            done=done, save=save)
    except (DatasetError, ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report.update(data=primary, split=args.split, cross_sources=cross_specs,
                  **({"cross_detect": no_face} if args.cross_detect else {}))
    print(format_table(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "robustness.json").write_text(json.dumps(report, indent=1))
        plot_report(report, out / "robustness.png")
        (out / PARTIAL).unlink(missing_ok=True)
        print(f"wrote {out / 'robustness.json'} and {out / 'robustness.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
