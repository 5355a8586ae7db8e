"""``python -m fer_keras.export``: write a trained model as a TF Serving SavedModel version.

Examples::

    python -m fer_keras.export                       # the shipped pretrained GiMeFive (FER2013, six classes)
    python -m fer_keras.export runs/gimefive/best.keras --base models --name gimefive
    python -m fer_keras.export --ensemble gimefive-fer2013 runs/fer2013-robust/best.keras --flip-tta --name ensemble
"""

from __future__ import annotations

import argparse
import sys

from fer_keras.config import CLASS_VIEWS, DEFAULT_MODEL, DEFAULT_PRETRAINED


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
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras import pretrained
    from fer_keras.exporting import export_saved_model
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    if args.ensemble and args.model:
        build_parser().error("give a MODEL or --ensemble MODEL MODEL ..., not both")
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
                                  version=args.version, flip_tta=args.flip_tta or bool(shipped_tta))
    except (ModelLoadError, pretrained.PretrainedError, FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
