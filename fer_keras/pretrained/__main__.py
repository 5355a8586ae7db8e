"""``python -m fer_keras.pretrained``: list the shipped models, print a card, pack a trained model, record figures.

::

    python -m fer_keras.pretrained list
    python -m fer_keras.pretrained card gimefive-fer2013
    python -m fer_keras.pretrained pack runs/fer2013/best.keras --name gimefive-fer2013 --run-dir runs/fer2013
    python -m fer_keras.evaluate --model gimefive-fer2013 --data fer2013=PATH --out eval/
    python -m fer_keras.pretrained measure gimefive-fer2013 --report eval/report.json --sample fer2013=PATH
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_keras.config import CLASS_VIEWS, DEFAULT_MODEL
from fer_keras.pretrained import (
    DEFAULT,
    WEIGHTS_DIR,
    PretrainedError,
    available,
    card,
    info,
    load,
    load_keras_model,
    pack,
)


def _measure_command(args: argparse.Namespace) -> int:
    """Records measured figures in a shipped model's metadata."""
    from fer_keras.evaluation import sample_accuracy

    meta = info(args.name, Path(args.out))
    if args.report:
        report = json.loads(Path(args.report).read_text())
        meta["test"] = {
            "data": args.report_data, "n": report["n"], "accuracy": round(report["accuracy"], 4),
            "macro_f1": round(report["macro_f1"], 4),
            "accuracy_without_leaked": round(report.get("accuracy_without_leaked", float("nan")), 4),
            "by_subset": {k: round(v["accuracy"], 4) for k, v in report.get("by_subset", {}).items()},
            "recall": {c: round(m["recall"], 4) for c, m in report["per_class"].items()},
        }
    if args.sample:
        source, _, root = args.sample.partition("=")
        if not root:
            raise PretrainedError(f"--sample needs SOURCE=PATH, got {args.sample!r}")
        meta["sample"] = sample_accuracy(load(args.name, Path(args.out)), source.strip().lower(), root, meta["classes"],
                                         meta["architecture"]["image_size"], flip_tta=bool(meta.get("flip_tta", False)))
    (Path(args.out) / f"{args.name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps({k: meta[k] for k in ("test", "sample") if k in meta}))
    return 0


# What pack reads from a portable training manifest.
MANIFEST_KEYS = ("architecture", "recipe", "data", "epochs_done", "best_epoch", "val_accuracy", "backend")
# What is kept of a shipped model that a new pack replaces or starts from.
KEPT_KEYS = ("name", "source", "recipe", "selected_epoch", "epochs_done", "test", "init_from")


def _pack_command(args: argparse.Namespace) -> int:
    from fer_keras.data.taxonomy import infer_taxonomy
    from fer_keras.models import architecture_record

    model = load_keras_model(args.model)
    taxonomy = infer_taxonomy(model, args.classes)
    extra: dict = {"source": str(args.model)}
    flip_tta = args.flip_tta
    if args.run_dir:
        run = Path(args.run_dir)
        config = json.loads((run / "config.json").read_text())
        # The run's folder as the command named it: the one config.json holds may be a path of the training machine.
        extra["recipe"] = {**config, "run_dir": str(args.run_dir)}
        state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else None
        if Path(args.model).resolve() == (run / "best.keras").resolve():
            if (run / "metrics.json").is_file():
                extra["run_metrics"] = json.loads((run / "metrics.json").read_text())
                if flip_tta is None:  # chosen on validation by training
                    flip_tta = bool(extra["run_metrics"].get("flip_tta", False))
            if state:
                extra["epochs_done"], extra["selected_epoch"] = state["epochs_done"], state["best_epoch"]
        elif state:
            # A model made from the run's checkpoints (a soup, an adjusted head): the run's metrics are best.keras's.
            extra["epochs_done"], extra["run_best_epoch"] = state["epochs_done"], state["best_epoch"]
        architecture = architecture_record(config["model"], config["data"]["image_size"], config["width"],
                                           options=config.get("model_options", {}))
    elif args.manifest:
        manifest = json.loads(Path(args.manifest).read_text())
        missing = [k for k in MANIFEST_KEYS if not isinstance(manifest, dict) or k not in manifest]
        if missing:
            raise PretrainedError(f"--manifest {args.manifest}: not a fer_keras.portable manifest "
                                  f"(no {', '.join(missing)})")
        architecture = manifest["architecture"]
        extra["recipe"] = {"trainer": "fer_keras.portable", **manifest["recipe"], "data": manifest["data"]}
        extra.update(epochs_done=manifest["epochs_done"], selected_epoch=manifest["best_epoch"],
                     val_accuracy_training=manifest["val_accuracy"], training_backend=manifest["backend"])
        start = manifest["recipe"].get("init_from", "")
        if start and not start.endswith(".json") and (Path(args.out) / f"{start}.json").is_file():
            # the model it started from is about to be replaced: keep how that one was made
            before = info(start, Path(args.out))
            extra["started_from"] = {k: before[k] for k in KEPT_KEYS if k in before}
    else:
        architecture = architecture_record(args.architecture, int(model.input_shape[1]))
    if (Path(args.out) / f"{args.name}.json").is_file():
        # the weights about to be replaced: keep how they were made and what they scored, beside the new
        before = info(args.name, Path(args.out))
        extra["replaces"] = {k: before[k] for k in (*KEPT_KEYS, "sample", "flip_tta") if k in before}
    if flip_tta:
        extra["flip_tta"] = True
    elif flip_tta is False:
        extra["flip_tta"] = False
    path = pack(model, args.name, Path(args.out), list(taxonomy.classes), architecture, extra)
    print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fer_keras.pretrained", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped models")
    c = sub.add_parser("card", help="print a shipped model's card")
    c.add_argument("name", nargs="?", default=DEFAULT)
    k = sub.add_parser("pack", help="write a trained model's weights in half precision with metadata")
    k.add_argument("model", help="a .keras model (best.keras of a run)")
    k.add_argument("--name", required=True, help="the shipped name, e.g. gimefive-fer2013")
    k.add_argument("--run-dir", default=None, help="the run that trained it (recipe, metrics, epochs)")
    k.add_argument("--manifest", default=None,
                   help="the fer_keras.portable manifest (NAME.json) that trained it, instead of --run-dir")
    k.add_argument("--flip-tta", action=argparse.BooleanOptionalAction, default=None,
                   help="serve with flip test-time augmentation or not (decide it on validation: evaluate --split "
                        "val). Default: what training chose for the run's best.keras, otherwise off")
    k.add_argument("--architecture", default=DEFAULT_MODEL, help="model registry name when there is no --run-dir")
    k.add_argument("--classes", choices=CLASS_VIEWS, default=None)
    k.add_argument("--out", default=str(WEIGHTS_DIR), help="Default: the package's weights folder")
    m = sub.add_parser("measure", help="record measured figures in a shipped model's metadata")
    m.add_argument("name")
    m.add_argument("--report", default=None, help="report.json of python -m fer_keras.evaluate --model NAME --out ...")
    m.add_argument("--report-data", default="FER2013 test folder (PublicTest + PrivateTest)",
                   help="what the report evaluated, in words")
    m.add_argument("--sample", default=None, metavar="SOURCE=PATH",
                   help="measure the fixed test sample the tests check, e.g. fer2013=PATH or ferplus=PATH")
    m.add_argument("--out", default=str(WEIGHTS_DIR), help="Default: the package's weights folder")
    args = p.parse_args(argv)
    try:
        if args.command == "list":
            for name in available():
                meta = info(name)
                test = meta.get("test", {})
                print(f"{name}\t{meta['architecture']['model']}\t{len(meta['classes'])} classes\t"
                      f"{meta['megabytes']} MB\ttest accuracy {test.get('accuracy', 'n/a')}")
            return 0
        if args.command == "card":
            print(card(args.name))
            return 0
        if args.command == "measure":
            return _measure_command(args)
        return _pack_command(args)
    except (PretrainedError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
