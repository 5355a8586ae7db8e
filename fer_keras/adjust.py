"""``python -m fer_keras.adjust``: correct a trained model for its training data's class frequencies.

Writes a copy of a model whose ``logits`` bias is lowered by ``tau * log(prior)`` (logit
adjustment, :mod:`fer_keras.candidates` says why), so that rare expressions are called as often as
they occur rather than as often as they were trained on. The copy is an ordinary model.

``tau`` is chosen on the validation split: the grid's value with the best
accuracy there (ties: the smaller); the priors are the training split's label
shares (the mean vote distributions with soft labels). The test split is not
used.

Example::

    python -m fer_keras.adjust --model runs/ferplus/best.keras --data ferplus=../shared/data/ferplus --classes seven \\
        --soft-labels --flip-tta --shifted-copy --out runs/ferplus/adjusted.keras
    python -m fer_keras.adjust --model gimefive-fer2013 --data fer2013=../shared/data/fer2013 --tau 0.2 --out a.keras
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fer_keras.candidates import GRID, adjusted, choose_tau, class_priors, logits_layer
from fer_keras.cli import add_adjustment_arguments, save_with_report, validation_faces
from fer_keras.data.readers.common import DatasetError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.adjust", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a .keras file or a shipped model name")
    p.add_argument("--tau", default="auto",
                   help="strength of the correction (0: none, 1: the priors undone in full), or auto: the best "
                        f"validation accuracy of {GRID[0]}..{GRID[-1]} in steps of 0.05. Default: %(default)s")
    add_adjustment_arguments(p)
    p.add_argument("--out", required=True, help="the adjusted model (.keras); a report NAME.adjust.json beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    try:
        if out.suffix != ".keras":
            raise ValueError(f"--out must name a .keras file; got {out}")
        if args.tau == "auto":
            grid = GRID
        else:
            try:
                grid = (float(args.tau),)
            except ValueError:
                raise ValueError(f"--tau takes a number of 0 or more, or auto; got {args.tau!r}") from None
            if not (np.isfinite(grid[0]) and grid[0] >= 0):
                raise ValueError(f"--tau takes a number of 0 or more, or auto; got {args.tau!r}")
        model = load_classifier(args.model)
        logits_layer(model)
        taxonomy = infer_taxonomy(model)
        data, val = validation_faces(args, taxonomy.name, "to choose tau on", require_train=True)
        priors = class_priors(data.splits["train"], args.soft_labels)
        tau, rows = choose_tau(model, val.images, val.labels, priors, grid=grid, flip_tta=args.flip_tta)
    except (DatasetError, ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    classes = list(taxonomy.classes)
    print("training priors: " + ", ".join(f"{c} {p:.4f}" for c, p in zip(classes, priors)))
    print(f"validation ({len(val)} faces{', flip TTA' if args.flip_tta else ''}):")
    print(f"{'tau':>6}{'accuracy':>10}  " + " ".join(f"{c[:8]:>8}" for c in classes))
    for r in rows:
        mark = " <" if r["tau"] == tau else ""
        print(f"{r['tau']:6.2f}{r['accuracy']:10.4f}  "
              + " ".join("       -" if v is None else f"{v:8.3f}" for v in r["recall"]) + mark)
    report = {"model": args.model, "tau": tau, "priors": dict(zip(classes, map(float, priors))),
              "soft_labels": args.soft_labels, "flip_tta": args.flip_tta, "shifted_copy": args.shifted_copy,
              "validation_faces": len(val), "grid": rows, "classes": classes}
    written = save_with_report(adjusted(model, priors, tau), out, report, "adjust")
    if written is None:
        return 2
    print(f"tau {tau}: wrote {out} and {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
