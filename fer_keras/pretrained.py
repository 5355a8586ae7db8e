"""Pretrained weights shipped inside the package, usable offline.

::

    from fer_keras import pretrained
    model = pretrained.load()                      # the default, "gimefive-fer2013"
    print(pretrained.card("gimefive-fer2013"))      # its model card

Each shipped model is three files in ``fer_keras/weights/``: ``NAME.npz`` (the
weights in half precision, in ``model.get_weights()`` order), ``NAME.json``
(how to build the architecture, the class view, the checksum of the weights,
whether predictions average each face with its mirror image, ``flip_tta``,
and the figures measured on them) and ``NAME.md`` (the model card). The
command line packs a trained run into that form and lists what ships::

    python -m fer_keras.pretrained list
    python -m fer_keras.pretrained card gimefive-fer2013
    python -m fer_keras.pretrained pack runs/fer2013/best.keras --name gimefive-fer2013 --run-dir runs/fer2013
    python -m fer_keras.evaluate --model gimefive-fer2013 --data fer2013=PATH --out eval/
    python -m fer_keras.pretrained measure gimefive-fer2013 --report eval/report.json --sample fer2013=PATH
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT = "gimefive-fer2013"
MAX_MEGABYTES = 25.0


class PretrainedError(ValueError):
    """A pretrained name that does not ship, or weights that fail their checksum."""


def available(directory: Path = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in Path(directory).glob("*.json") if p.with_suffix(".npz").is_file())


def info(name: str = DEFAULT, directory: Path = WEIGHTS_DIR) -> dict:
    """The metadata of a shipped model: architecture, classes, checksum and measured figures."""
    path = Path(directory) / f"{name}.json"
    if not path.is_file() or not path.with_suffix(".npz").is_file():
        names = ", ".join(available(directory)) or "none"
        raise PretrainedError(f"no pretrained model {name!r} (shipped: {names})")
    return json.loads(path.read_text())


def card(name: str = DEFAULT, directory: Path = WEIGHTS_DIR) -> str:
    """The model card (Markdown) of a shipped model."""
    info(name, directory)
    path = Path(directory) / f"{name}.md"
    return path.read_text() if path.is_file() else ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(name: str = DEFAULT, directory: Path = WEIGHTS_DIR):
    """The shipped model ``name`` as a Keras model (float32 weights, preprocessing inside).

    Raises:
        PretrainedError: unknown name, or weights whose checksum does not match
            (a truncated download or a Git LFS pointer instead of the file).
    """
    from fer_keras.models import build_model

    meta = info(name, directory)
    weights_path = Path(directory) / f"{name}.npz"
    if _sha256(weights_path) != meta["sha256"]:
        raise PretrainedError(f"{weights_path} does not match its checksum: the file is damaged or incomplete")
    arch = meta["architecture"]
    model = build_model(arch["model"], num_classes=len(meta["classes"]), input_size=arch["image_size"],
                        channels=arch.get("channels", 1), width=arch.get("width", 1.0), **arch.get("options", {}))
    with np.load(weights_path) as data:
        arrays = [data[f"w{i:03d}"].astype(np.float32) for i in range(len(data.files))]
    expected = [tuple(w.shape) for w in model.weights]
    if [a.shape for a in arrays] != expected:
        raise PretrainedError(f"{weights_path} does not fit the {arch['model']} architecture its metadata names")
    model.set_weights(arrays)
    return model


def pack(model, name: str, directory: Path, classes: list[str], architecture: dict, extra: dict | None = None) -> Path:
    """Writes ``model``'s weights in half precision with their metadata; returns the ``.npz`` path.

    Weights whose values do not survive float16 (beyond its range) are refused.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for i, w in enumerate(model.get_weights()):
        with np.errstate(over="ignore"):
            half = w.astype(np.float16)
        if not np.all(np.isfinite(half)):
            raise ValueError(f"weight {i} ({w.shape}) overflows half precision")
        arrays[f"w{i:03d}"] = half
    path = directory / f"{name}.npz"
    np.savez_compressed(path, **arrays)
    size_mb = path.stat().st_size / 2**20
    if size_mb > MAX_MEGABYTES:
        path.unlink()
        raise ValueError(f"{name}: {size_mb:.1f} MB of weights is above the {MAX_MEGABYTES:.0f} MB limit")
    meta = {"name": name, "classes": list(classes), "architecture": architecture, "dtype": "float16",
            "sha256": _sha256(path), "megabytes": round(size_mb, 2), **(extra or {})}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")
    return path


def serving_base(name: str = DEFAULT, cache: Path | None = None) -> Path:
    """A TF Serving base path holding the shipped model as SavedModel version 1.

    Exported once into ``cache`` (default ``$FER_KERAS_CACHE/serving/<name>``,
    ``FER_KERAS_CACHE`` defaulting to ``~/.cache/fer-keras``) and reused while the
    shipped weights keep their checksum.
    """
    from fer_keras.data.taxonomy import TAXONOMIES
    from fer_keras.exporting import export_saved_model

    meta = info(name)
    root = Path(os.environ.get("FER_KERAS_CACHE", Path.home() / ".cache" / "fer-keras"))
    base = Path(cache) if cache else root / "serving" / name
    stamp = base / "weights.sha256"
    version = base / "1"
    if (version / "saved_model.pb").is_file() and stamp.is_file() and stamp.read_text().strip() == meta["sha256"]:
        return base
    if version.exists():
        import shutil

        shutil.rmtree(version)
    taxonomy = next(t for t in TAXONOMIES.values() if list(t.classes) == meta["classes"])
    export_saved_model(load(name), str(base.parent), base.name, taxonomy.classes, version=1,
                       flip_tta=bool(meta.get("flip_tta", False)))
    stamp.write_text(meta["sha256"] + "\n")
    return base


def fixed_sample(source: str, root: str | Path, classes: list[str], size: int, every: int = 10):
    """A fixed sample of a dataset's test faces: every ``every``-th image of the
    test split of ``source`` (a reader name: fer2013, ferplus, ...) sorted by
    name, in the model's class view, decoded as in training."""
    from fer_keras.data.faces import load_faces
    from fer_keras.data.sources import READERS
    from fer_keras.data.taxonomy import TAXONOMIES

    if source not in READERS:
        raise PretrainedError(f"unknown sample source {source!r}; choose one of: {', '.join(READERS)}")
    taxonomy = next(t for t in TAXONOMIES.values() if list(t.classes) == list(classes))
    records = sorted((r for r in READERS[source](str(root))[0] if r.split == "test" and taxonomy.index(r.emotion) is not None),
                     key=lambda r: r.name)
    faces, _, _ = load_faces(records[::every], taxonomy, size, progress=False)
    return faces


def sample_accuracy(model, source: str, root: str | Path, classes: list[str], size: int, every: int = 10,
                    flip_tta: bool = False) -> dict:
    """Accuracy of ``model`` on :func:`fixed_sample` (with flip TTA when the model ships with it)."""
    from fer_keras.evaluation import predict_probabilities

    faces = fixed_sample(source, root, classes, size, every)
    predicted = predict_probabilities(model, faces.images, flip_tta=flip_tta).argmax(1)
    return {"source": source, "every": every, "n": int(len(faces)),
            "accuracy": round(float((predicted == faces.labels).mean()), 4), "flip_tta": flip_tta}


def _measure_command(args: argparse.Namespace) -> int:
    """Records measured figures in a shipped model's metadata."""
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


def _pack_command(args: argparse.Namespace) -> int:
    from fer_keras.loading import infer_taxonomy, load_classifier

    model = load_classifier(args.model)
    taxonomy = infer_taxonomy(model, args.classes)
    extra: dict = {"source": str(args.model)}
    if args.run_dir:
        run = Path(args.run_dir)
        config = json.loads((run / "config.json").read_text())
        extra["recipe"] = config
        if (run / "metrics.json").is_file():
            extra["run_metrics"] = json.loads((run / "metrics.json").read_text())
            extra["flip_tta"] = bool(extra["run_metrics"].get("flip_tta", False))  # chosen on validation by training
        if (run / "state.json").is_file():
            state = json.loads((run / "state.json").read_text())
            extra["epochs_done"], extra["selected_epoch"] = state["epochs_done"], state["best_epoch"]
        architecture = {"model": config["model"], "width": config["width"], "image_size": config["data"]["image_size"],
                        "channels": 1, "options": config.get("model_options", {})}
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
            extra["started_from"] = {k: before[k] for k in ("name", "source", "recipe", "selected_epoch", "epochs_done",
                                                           "test", "init_from") if k in before}
    else:
        architecture = {"model": args.architecture, "width": 1.0, "image_size": int(model.input_shape[1]), "channels": 1}
    if args.flip_tta:
        extra["flip_tta"] = True
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
    k.add_argument("--flip-tta", action="store_true",
                   help="serve with flip test-time augmentation (decide it on validation: evaluate --split val)")
    k.add_argument("--architecture", default="gimefive", help="model registry name when there is no --run-dir")
    k.add_argument("--classes", choices=("six", "seven"), default=None)
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
