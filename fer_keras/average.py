"""``python -m fer_keras.average``: one model from the weights of several checkpoints of one training run.

The element-wise mean of every weight, BatchNorm's moving statistics included (a "model soup",
:mod:`fer_keras.candidates` says why); the result is an ordinary model of the same architecture.

With ``--data`` the candidates are ranked by validation accuracy and a greedy soup is made: starting
from the best, each next checkpoint joins the average only if the average's validation accuracy does
not drop. Without ``--data`` every model given is averaged. The test split is not used.

Example::

    python -m fer_keras.average --models runs/ferplus/checkpoints/epoch-00{25..32}.keras \\
        --data ferplus=../shared/data/ferplus --classes seven --flip-tta --shifted-copy --out runs/ferplus/soup.keras
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import keras
import numpy as np

from fer_keras.candidates import average_weights, greedy_soup
from fer_keras.cli import add_data_arguments, add_validation_arguments, save_with_report, validation_faces
from fer_keras.data.readers.common import DatasetError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.average", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", required=True,
                   help="two or more .keras checkpoints of one architecture (e.g. the last epochs of one run)")
    add_data_arguments(p)
    p.add_argument("--greedy", action=argparse.BooleanOptionalAction, default=None,
                   help="greedy soup chosen on validation (the default when --data is given: without it no faces "
                        "are read); --no-greedy averages every model")
    add_validation_arguments(p, "score")
    p.add_argument("--out", required=True, help="the averaged model (.keras); a report NAME.average.json beside it")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    from fer_keras.evaluation import predict_probabilities
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    greedy = bool(args.data) if args.greedy is None else args.greedy
    try:
        if out.suffix != ".keras":
            raise ValueError(f"--out must name a .keras file; got {out}")
        if len(args.models) < 2:
            raise ValueError(f"--models needs two or more checkpoints to average; got {len(args.models)}")
        if greedy and not args.data:
            raise ValueError("--greedy chooses on validation faces: give --data")
        models = []
        for name in args.models:
            model = load_classifier(name)
            if not isinstance(model, keras.Model):
                raise ValueError(f"{name} is not a Keras model (.keras file or shipped name); a SavedModel cannot be "
                                 "averaged")
            models.append(model)
        average = average_weights(models, args.models) if not greedy else None  # checks the architectures
        rows = []
        if args.data:
            _, val = validation_faces(args, infer_taxonomy(models[0]).name, "to score the checkpoints on")
            labels = np.asarray(val.labels)

            def score(model) -> float:
                predicted = predict_probabilities(model, val.images, flip_tta=args.flip_tta).argmax(1)
                return float((predicted == labels).mean())

            if greedy:
                average_weights(models, args.models)  # one clear error before any scoring
                average, rows = greedy_soup(models, args.models, score)
            else:
                rows = [{"model": n, "alone": score(m)} for n, m in zip(args.models, models)]
                rows.append({"model": "average of all", "soup": score(average), "joined": True})
    except (DatasetError, ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rows:
        print(f"validation ({len(val)} faces{', flip TTA' if args.flip_tta else ''}):")
        for r in rows:
            alone = f"{r['alone']:.4f}" if "alone" in r else "-"
            soup = f"{r['soup']:.4f}" if "soup" in r else "-"
            print(f"  {r['model']}: alone {alone}, average {soup}{' (joined)' if r.get('joined') else ''}")
    members = [r["model"] for r in rows if r.get("joined")] if greedy else list(args.models)
    report = {"models": list(args.models), "greedy": greedy, "members": members, "flip_tta": args.flip_tta,
              "shifted_copy": args.shifted_copy, "validation": rows}
    written = save_with_report(average, out, report, "average")
    if written is None:
        return 2
    print(f"averaged {len(members)} of {len(args.models)} models: wrote {out} and {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
