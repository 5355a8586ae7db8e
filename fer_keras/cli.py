"""Flags shared by the command lines, built from the registries and the defaults in ``fer_keras.config``.

No command line imports another: each takes the flags it shares with the others from here.
"""

from __future__ import annotations

import argparse

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
