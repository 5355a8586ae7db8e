"""``python -m fer_keras.export``: write a trained model as a TF Serving SavedModel version.

Examples::

    python -m fer_keras.export                       # the shipped pretrained GiMeFive (FER2013, six classes)
    python -m fer_keras.export runs/gimefive/best.keras --base models --name gimefive
    python -m fer_keras.export --ensemble gimefive-fer2013 runs/fer2013-robust/best.keras --flip-tta --name ensemble
    python -m fer_keras.export gimefive-fer2013 --format litert --quantize fp16 --out edge/gimefive-fer2013-fp16.tflite
    python -m fer_keras.export gimefive-ferplus --format litert --quantize int8 --out edge/ferplus-int8.tflite \
        --data ferplus=../shared/data/ferplus

A LiteRT file (``--format litert``) takes raw uint8 grey faces [N, H, W, 1] and answers probabilities; its
manifest NAME.json beside it names the classes. int8 is calibrated on ``--calibration-faces`` training
faces of ``--data`` (drawn evenly over the classes, seeded).
"""

from __future__ import annotations

import argparse
import sys

from fer_keras.config import CLASS_VIEWS, DEFAULT_MODEL, DEFAULT_PRETRAINED

LITERT_QUANTIZE = ("none", "fp16", "int8")  # fer_keras.exporting's, here so that --help stays light


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None,
                   help="a .keras model file (best.keras of a run) or a shipped model name. "
                        f"Default: the shipped {DEFAULT_PRETRAINED}")
    p.add_argument("--ensemble", nargs="+", default=None, metavar="MODEL",
                   help="export these models (.keras or shipped names, one class view and face size) as one "
                        "SavedModel serving the mean of their probabilities (gradcam: the first model's)")
    p.add_argument("--base", default="models", help="serving base path. Default: %(default)s")
    p.add_argument("--name", default=DEFAULT_MODEL, help="model name TF Serving serves it under. Default: %(default)s")
    p.add_argument("--version", type=int, default=None, help="version number. Default: the next free one")
    p.add_argument("--flip-tta", action="store_true",
                   help="serve the mean prediction of each face and its mirror image (a shipped model: as it ships)")
    p.add_argument("--classes", choices=CLASS_VIEWS, default=None,
                   help="class view. Default: from the model's output size")
    p.add_argument("--precision", choices=("float32", "bfloat16"), default="float32",
                   help="SavedModel: bfloat16 computes serving_default in bfloat16 (float32 in and out, "
                        "explanations float32; faster on CPUs with AMX or AVX512-BF16). Default: %(default)s")
    e = p.add_argument_group("LiteRT (edge) file")
    e.add_argument("--format", choices=("savedmodel", "litert"), default="savedmodel",
                   help="savedmodel: a TF Serving version under --base; litert: one .tflite file, --out. "
                        "Default: %(default)s")
    e.add_argument("--quantize", choices=LITERT_QUANTIZE, default="none",
                   help="with --format litert: float32 (none), float16 weights, or int8 weights and activations "
                        "calibrated on training faces of --data. Default: %(default)s")
    e.add_argument("--out", default=None, help="with --format litert: the .tflite file to write")
    e.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                   help="with --quantize int8: the dataset whose training faces calibrate it (as train's --data)")
    e.add_argument("--calibration-faces", type=int, default=600,
                   help="with --quantize int8: how many training faces calibrate it. Default: %(default)s")
    return p


def calibration_faces(sources: list[str], classes: str, size: int, count: int, seed: int = 0):
    """``count`` training faces of ``sources``, about as many per class, uint8 [N, size, size, 1]."""
    import numpy as np

    from fer_keras.config import DataConfig
    from fer_keras.data.sources import load_data

    data = load_data(DataConfig(sources=tuple(sources), classes=classes, image_size=size, seed=seed),
                     require_train=True)
    train = data.splits["train"]
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(train.labels == k)) for k in np.unique(train.labels)]
    picked = np.concatenate([rows[: max(1, count // len(per_class))] for rows in per_class])[:count]
    return train.images[np.sort(picked)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras import pretrained
    from fer_keras.exporting import export_saved_model
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    if args.ensemble and args.model:
        build_parser().error("give a MODEL or --ensemble MODEL MODEL ..., not both")
    if args.format == "litert":
        if args.precision != "float32":
            build_parser().error("--precision is a SavedModel's; a LiteRT file takes --quantize")
        return _litert(args)
    if args.out or args.quantize != "none" or args.data:
        build_parser().error("--out, --quantize and --data go with --format litert")
    names = args.ensemble or [args.model or pretrained.DEFAULT]
    try:
        if args.ensemble is not None and len(names) < 2:
            raise ModelLoadError("--ensemble needs at least two models")
        for name in names:
            if not name.endswith(".keras") and name not in pretrained.available():
                raise ModelLoadError(f"{name}: expected a .keras file or a shipped model name "
                                     f"({', '.join(pretrained.available())})")
        models = [load_classifier(name) for name in names]
        views = {name: infer_taxonomy(m, args.classes).name for name, m in zip(names, models)}
        if len(set(views.values())) > 1:
            raise ModelLoadError(f"the ensemble's models have different class views: {views}")
        taxonomy = infer_taxonomy(models[0], args.classes)
        shipped_tta = len(names) == 1 and names[0] in pretrained.available() and \
            pretrained.info(names[0]).get("flip_tta", False)
        path = export_saved_model(models if args.ensemble else models[0], args.base, args.name, taxonomy.classes,
                                  version=args.version, flip_tta=args.flip_tta or bool(shipped_tta),
                                  precision=args.precision)
    except (ModelLoadError, pretrained.PretrainedError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _litert(args) -> int:
    from fer_keras import pretrained
    from fer_keras.data.readers.common import DatasetError
    from fer_keras.exporting import export_litert
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    parser = build_parser()
    if args.ensemble:
        parser.error("--format litert writes one model; --ensemble is a SavedModel's")
    if not args.out or not args.out.endswith(".tflite"):
        parser.error("--format litert needs --out FILE.tflite")
    if args.quantize == "int8" and not args.data:
        parser.error("--quantize int8 needs --data NAME=PATH: its training faces calibrate the 8-bit ranges")
    name = args.model or pretrained.DEFAULT
    try:
        if not name.endswith(".keras") and name not in pretrained.available():
            raise ModelLoadError(f"{name}: expected a .keras file or a shipped model name "
                                 f"({', '.join(pretrained.available())})")
        model = load_classifier(name)
        taxonomy = infer_taxonomy(model, args.classes)
        shipped_tta = name in pretrained.available() and pretrained.info(name).get("flip_tta", False)
        faces = (calibration_faces(args.data, taxonomy.name, int(model.input_shape[1]), args.calibration_faces)
                 if args.quantize == "int8" else None)
        path = export_litert(model, args.out, taxonomy.classes, quantize=args.quantize,
                             flip_tta=args.flip_tta or bool(shipped_tta), calibration=faces, source=name)
    except (ModelLoadError, pretrained.PretrainedError, DatasetError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
