"""``python -m fer_keras.export``: write a trained model as a TF Serving SavedModel version.

Examples::

    python -m fer_keras.export                       # the shipped pretrained GiMeFive (FER2013, six classes)
    python -m fer_keras.export runs/gimefive/best.keras --base models --name gimefive
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None,
                   help="a .keras model file (best.keras of a run) or a shipped model name. "
                        "Default: the shipped gimefive-fer2013")
    p.add_argument("--base", default="models", help="serving base path. Default: %(default)s")
    p.add_argument("--name", default="gimefive", help="model name TF Serving serves it under. Default: %(default)s")
    p.add_argument("--version", type=int, default=None, help="version number. Default: the next free one")
    p.add_argument("--flip-tta", action="store_true",
                   help="serve the mean prediction of each face and its mirror image (a shipped model: as it ships)")
    p.add_argument("--classes", choices=("six", "seven"), default=None,
                   help="class view. Default: from the model's output size")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.exporting import export_saved_model
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    from fer_keras import pretrained

    args.model = args.model or pretrained.DEFAULT
    try:
        if not args.model.endswith(".keras") and args.model not in pretrained.available():
            raise ModelLoadError(f"{args.model}: expected a .keras file or a shipped model name "
                                 f"({', '.join(pretrained.available())})")
        model = load_classifier(args.model)
        taxonomy = infer_taxonomy(model, args.classes)
        shipped_tta = args.model in pretrained.available() and pretrained.info(args.model).get("flip_tta", False)
        path = export_saved_model(model, args.base, args.name, taxonomy.classes, version=args.version,
                                  flip_tta=args.flip_tta or bool(shipped_tta))
    except (ModelLoadError, pretrained.PretrainedError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
