"""``python -m fer_keras.evaluate``: the test report of a trained model on any reader's split.

The report is in the model's own class view. Asking for a wider view
(``--classes seven`` for a six-class model) adds where the faces of the
classes the model lacks (neutral) come out. Several models evaluate as one
ensemble: the mean of their probabilities (with ``--flip-tta``, of each
model's flip-averaged probabilities).

Example::

    python -m fer_keras.evaluate --model runs/gimefive/best.keras --data fer2013=../shared/data/fer2013
    python -m fer_keras.evaluate --model gimefive-fer2013 --data fer2013=../shared/data/fer2013 --classes seven
    python -m fer_keras.evaluate --model a.keras b.keras --data ferplus=../shared/data/ferplus --classes seven
    python -m fer_keras.evaluate --model gimefive-fer2013 --data ckplus=data/CK+ --split all   # a source in full
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from fer_keras.cli import add_data_arguments, data_config
from fer_keras.data.readers.common import DatasetError
from fer_keras.detection import LEVEL_EYES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, nargs="+",
                   help="a .keras file, a SavedModel folder (version folder or model folder) or a shipped model name; "
                        "several: evaluate their ensemble (the mean of their probabilities)")
    add_data_arguments(p)
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                   help="split to evaluate; all: every image of the source(s), for a cross-dataset test of a source "
                        "the model never saw. Default: %(default)s")
    p.add_argument("--exclude-leaked", action="store_true",
                   help="evaluate only faces that do not also appear in the training data")
    p.add_argument("--flip-tta", action="store_true", help="average predictions with the mirrored faces")
    p.add_argument("--detect", action="store_true",
                   help="whole photographs: find the face in each image first and classify its crop, as the video "
                        "client does (the report counts the images with no face: no_face)")
    p.add_argument("--detector", default="blazeface",
                   help="with --detect: blazeface (verified by O-Net), mtcnn or haar. Default: %(default)s")
    p.add_argument("--level", action=argparse.BooleanOptionalAction, default=LEVEL_EYES,
                   help="with --detect and --align: also turn each crop to level the eyes. Default: %(default)s")
    p.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="with --detect: frame each face from its eyes and mouth as FER2013 (--no-align: from the "
                        "detector's box). Default: %(default)s")
    p.add_argument("--shifted-copy", action="store_true",
                   help="add a copy of the faces, each under one shift of the robustness suite (seeded by --seed): "
                        "the validation that fer_keras.train --shifted-validation chooses checkpoints on "
                        "(by_subset gives the shifted copy alone)")
    p.add_argument("--batch-size", type=int, default=128, help="prediction batch size. Default: %(default)s")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of carved splits (use the training run's). Default: %(default)s"
    )
    p.add_argument("--out", default=None, help="folder for report.json and confusion_matrix.png")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.data.integrity import leaked_mask
    from fer_keras.data.sources import load_data
    from fer_keras.evaluation import evaluate_faces, unseen_class_report
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifiers
    from fer_keras.plots import plot_confusion_matrix

    try:
        model = load_classifiers(args.model)
        taxonomy = infer_taxonomy(model)
        requested = args.classes
        if taxonomy.name != requested:
            print(f"note: the model has the {taxonomy.name}-class view; evaluating that view", file=sys.stderr)
        data = load_data(data_config(args, args.seed, classes=taxonomy.name), require_train=args.split != "train")
        if args.split == "all":
            faces, others = data.all_faces(), []
        elif args.split not in data.splits:
            raise DatasetError(f"the data has no {args.split} split (it has {', '.join(data.splits)})")
        else:
            faces = data.splits[args.split]
            others = [data.splits[s] for s in ("train", "val") if s in data.splits and s != args.split]
        leaked = leaked_mask(faces, *others) if others else None
        if args.exclude_leaked and leaked is not None:
            faces, leaked = faces.select(~leaked), None
        no_face: list[str] = []
        if args.detect:
            from fer_keras.detection import make_detector
            from fer_keras.evaluation import crop_detected_faces

            if args.detector == "none":
                raise ValueError("--detect needs a detector: blazeface, mtcnn or haar")
            total = len(faces)
            faces, no_face = crop_detected_faces(faces, make_detector(args.detector), align=args.align,
                                                 level=args.level)
            if leaked is not None:  # still by the whole images' pixels: a photo with a copy in training
                leaked = leaked_mask(faces, *others)
            print(f"--detect: a face in {len(faces)} of {total} images ({len(no_face)} with none, left out)",
                  file=sys.stderr)
            if not len(faces):
                raise ValueError(f"--detect found no face in any of the {total} images")
        if args.shifted_copy:
            from fer_keras.data.shifts import with_shifted_copy

            faces = with_shifted_copy(faces, args.seed)
            leaked = None if leaked is None else np.concatenate([leaked, leaked])
        report = evaluate_faces(model, faces, leaked=leaked, batch_size=args.batch_size, flip_tta=args.flip_tta)
        if requested != taxonomy.name:
            # the requested view, with the classes the model lacks (its own split of the faces)
            wide_data = load_data(data_config(args, args.seed, classes=requested), require_train=False)
            wide = wide_data.all_faces() if args.split == "all" else wide_data.splits.get(args.split)
            if wide is not None and set(wide.taxonomy.classes) - set(taxonomy.classes):
                report["unseen_classes"] = unseen_class_report(
                    model, wide, taxonomy.classes, batch_size=args.batch_size, flip_tta=args.flip_tta
                )
    except (DatasetError, ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report.update(
        model=args.model[0] if len(args.model) == 1 else list(args.model),
        split=args.split,
        excluded_leaked=args.exclude_leaked,
        shifted_copy=args.shifted_copy,
    )
    if args.detect:
        report.update(detect={"detector": args.detector, "align": args.align, "level": args.level,
                              "no_face": len(no_face), "images": len(no_face) + report["n"],
                              "no_face_images": no_face[:100]})
    print(json.dumps({k: report[k] for k in ("n", "accuracy", "macro_f1") if k in report}))
    for c, m in report["per_class"].items():
        low, high = m["recall_ci95"]
        flag = "  too few faces to tell" if m["too_few_to_tell"] else ""
        print(f"  {c:>10}: recall {m['recall']:.3f} (95 % interval {low:.3f}-{high:.3f})  "
              f"precision {m['precision']:.3f}  (n={m['support']}){flag}")
    for key in ("by_subset", "accuracy_without_leaked"):
        if key in report:
            print(f"  {key}: {report[key]}")
    for name, seen in report.get("unseen_classes", {}).items():
        shares = ", ".join(f"{c} {v:.0%}" for c, v in sorted(seen["predicted"].items(), key=lambda kv: -kv[1]))
        print(f"  {name} faces (not a class of the model, n={seen['n']}): predicted as {shares}; "
              f"mean top probability {seen['mean_top_probability']:.2f}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1))
        plot_confusion_matrix(report["confusion_matrix"], taxonomy.classes, out / "confusion_matrix.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
