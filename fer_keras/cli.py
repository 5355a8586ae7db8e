"""Flags shared by the command lines, built from the registries and the defaults in ``fer_keras.config``.

No command line imports another: each takes the flags it shares with the others from here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fer_keras.config import CLASS_VIEWS, DataConfig
from fer_keras.data.readers.common import DatasetError
from fer_keras.data.readers.fer2013 import PROTOCOLS
from fer_keras.data.sources import SOURCE_NAMES

DD = DataConfig()


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data flags shared by training, evaluation and tuning."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                   help=f"a data source, repeatable to aggregate several; NAME is one of {', '.join(SOURCE_NAMES)} "
                        "(synthetic needs no path, or synthetic=N faces per class). Default: synthetic")
    g.add_argument("--classes", choices=CLASS_VIEWS, default=DD.classes,
                   help="class view: six (GiMeFive order) or seven (with neutral). Default: %(default)s")
    g.add_argument("--image-size", type=int, default=DD.image_size, help="face side in pixels. Default: %(default)s")
    g.add_argument("--val-fraction", type=float, default=DD.val_fraction,
                   help="training share carved out for validation where a source has none. Default: %(default)s")
    g.add_argument("--test-fraction", type=float, default=DD.test_fraction,
                   help="share held out for testing where a source has no split. Default: %(default)s")
    g.add_argument("--fer2013-protocol", choices=PROTOCOLS, default=DD.fer2013_protocol,
                   help="whole-test: test on PublicTest+PrivateTest, validate on a carve of Training (the paper); "
                        "standard: validate on PublicTest, test on PrivateTest. Default: %(default)s")
    g.add_argument("--label-map", default="", metavar="FOLDER=EMOTION,...",
                   help="folder-name to emotion map for the 'folders' source, e.g. joy=happiness,mad=anger")
    g.add_argument("--synthetic-per-class", type=int, default=DD.synthetic_per_class,
                   help="synthetic faces per emotion. Default: %(default)s")


def data_config(args: argparse.Namespace, seed: int = 0, *, classes: str | None = None,
                sources: list[str] | None = None) -> DataConfig:
    """The DataConfig the data flags describe; ``classes`` and ``sources`` replace ``--classes`` and
    ``--data`` (a command that follows the model's class view passes it here, never into ``args``)."""
    label_map = tuple(tuple(p.split("=", 1)) for p in args.label_map.split(",") if p) if args.label_map else ()
    if any(len(pair) != 2 for pair in label_map):
        raise DatasetError(f"--label-map {args.label_map!r}: expected FOLDER=EMOTION pairs separated by commas")
    return DataConfig(
        sources=tuple(args.data if sources is None else sources),
        classes=classes or args.classes,
        image_size=args.image_size,
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        fer2013_protocol=args.fer2013_protocol,
        label_map=label_map,
        synthetic_per_class=args.synthetic_per_class,
        seed=seed,
    )


def add_validation_arguments(parser: argparse.ArgumentParser, verb: str) -> None:
    """The flags of the commands that choose something on the validation faces (``fer_keras.adjust``,
    ``fer_keras.average``); ``verb`` says what they do there ("choose", "score")."""
    parser.add_argument("--flip-tta", action="store_true",
                        help=f"{verb} with flip TTA (as the model will be used: a shipped model's card says)")
    parser.add_argument("--shifted-copy", action="store_true",
                        help=f"{verb} on the validation faces plus a shifted copy (what fer_keras.train "
                             "--shifted-validation chose checkpoints on)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of carved splits and of the shifted copy (use the training run's)")


def add_adjustment_arguments(parser: argparse.ArgumentParser) -> None:
    """The data, ``--soft-labels`` and validation flags of the commands that adjust a model for its
    training priors on validation faces (``adjust``, ``finish``)."""
    add_data_arguments(parser)
    parser.add_argument("--soft-labels", action="store_true",
                        help="class priors from the annotators' vote distributions (FER+), as a --soft-labels run "
                             "trained on")
    add_validation_arguments(parser, "choose")


def validation_faces(args: argparse.Namespace, classes: str, purpose: str, *, require_train: bool = False):
    """The data the flags name, and its validation faces (with their shifted copy for ``--shifted-copy``);
    ``purpose`` ("to choose tau on") completes the error where the data has no validation split."""
    from fer_keras.data.shifts import with_shifted_copy
    from fer_keras.data.sources import load_data

    data = load_data(data_config(args, args.seed, classes=classes), require_train=require_train)
    if "val" not in data.splits:
        raise DatasetError(f"the data has no validation split {purpose} (it has {', '.join(data.splits)}; "
                           "--val-fraction carves one out of the training faces)")
    val = data.splits["val"]
    return data, (with_shifted_copy(val, args.seed) if args.shifted_copy else val)


def save_with_report(model, out, report: dict, kind: str):
    """Saves ``model`` to ``out`` (.keras) and ``report`` as ``NAME.<kind>.json`` beside it; the report's path,
    or None after printing one clear error when either cannot be written."""
    out = Path(out)
    path = out.with_suffix(f".{kind}.json")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
        path.write_text(json.dumps(report, indent=1) + "\n")
    except OSError as err:
        print(f"error: cannot write {out}: {err}", file=sys.stderr)
        return None
    return path
