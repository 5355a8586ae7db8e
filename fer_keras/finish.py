"""``python -m fer_keras.finish``: the final model of a training run, chosen on validation by a fixed rule.

Reads ``RUN/best.keras`` and the checkpoints the run kept (``fer_keras.train --keep-checkpoints``), makes
the greedy soup of them and the logit-adjusted copies of the best checkpoint and of the soup, scores
each on the validation faces, and picks one by :func:`fer_keras.candidates.choose_candidate` (the highest
validation accuracy; a soup must beat the checkpoint by ``--soup-margin``, an adjustment must choose
``tau`` > 0). Then it scores the chosen model with and without flip TTA, so that the TTA it is served
with is decided on validation too. The rule is the same for every run, so a choice cannot drift towards
the test split; the test split is not read here. Writes ``OUT/candidate.keras`` and
``OUT/candidate.finish.json`` (every model's validation accuracy, the soup's members, each ``tau``, the
choice and why the others lost) and prints the one command that evaluates the candidate on the test
split.

Example::

    python -m fer_keras.finish --run-dir runs/ferplus-r8 --data ferplus=../shared/data/ferplus --classes seven \\
        --soft-labels --flip-tta --shifted-copy
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import keras
import numpy as np

from fer_keras.candidates import SOUP_MARGIN, adjusted, choose_candidate, choose_tau, class_priors, greedy_soup
from fer_keras.checkpointing import load_state
from fer_keras.cli import add_adjustment_arguments, save_with_report, validation_faces
from fer_keras.data.readers.common import DatasetError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.finish", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", required=True, help="the training run's folder (fer_keras.train --run-dir)")
    add_adjustment_arguments(p)
    p.add_argument("--soup-margin", type=float, default=100 * SOUP_MARGIN,
                   help="validation points a soup must add over the best checkpoint to be chosen. Default: %(default)s")
    p.add_argument("--out", help="folder of the candidate and its report. Default: RUN/finish")
    return p


def _data_flags(argv: list[str]) -> list[str]:
    """The data flags of ``argv``, for the printed test command."""
    keep = {"--data", "--classes", "--image-size", "--val-fraction", "--test-fraction", "--fer2013-protocol",
            "--label-map", "--synthetic-per-class"}
    flags, i = [], 0
    while i < len(argv):
        name = argv[i].split("=", 1)[0]
        if name in keep:
            takes_next = "=" not in argv[i] and i + 1 < len(argv)
            flags += argv[i:i + 1 + takes_next]
            i += 1 + takes_next
        else:
            i += 1
    return flags


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    from fer_keras.evaluation import predict_probabilities
    from fer_keras.loading import ModelLoadError, infer_taxonomy, load_classifier

    run = Path(args.run_dir)
    out = Path(args.out) if args.out else run / "finish"
    try:
        if not (run / "best.keras").is_file():
            raise ValueError(f"--run-dir {run} holds no best.keras: name the folder of a training run "
                             "(fer_keras.train --run-dir) that has finished at least one epoch")
        if not (0 <= args.soup_margin < 100):
            raise ValueError(f"--soup-margin takes validation points from 0 to 100; got {args.soup_margin}")
        try:
            state = load_state(run)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{run / 'state.json'} cannot be read ({err}): is {run} a training run's "
                             "folder?") from None
        best_epoch = state.best_epoch if state else None
        kept = sorted((run / "checkpoints").glob("epoch-*.keras"))
        kept = [p for p in kept if p.stem != f"epoch-{best_epoch or 0:04d}"]  # best.keras is that epoch already
        names = ["best.keras", *(f"checkpoints/{p.name}" for p in kept)]
        models = [load_classifier(str(run / "best.keras")), *(load_classifier(str(p)) for p in kept)]
        if not all(isinstance(m, keras.Model) for m in models):
            raise ValueError(f"{run}'s checkpoints are not Keras models")
        data, val = validation_faces(args, infer_taxonomy(models[0]).name, "to choose on", require_train=True)
        priors = class_priors(data.splits["train"], args.soft_labels)
    except (DatasetError, ModelLoadError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    labels = np.asarray(val.labels)

    def score(model, flip_tta=args.flip_tta) -> float:
        return float((predict_probabilities(model, val.images, flip_tta=flip_tta).argmax(1) == labels).mean())

    try:
        soup, soup_rows = greedy_soup(models, names, score)
    except ValueError as err:  # a kept checkpoint of another architecture
        print(f"error: {err}", file=sys.stderr)
        return 2
    members = [r["model"] for r in soup_rows if r["joined"]]
    best_alone = next(r["alone"] for r in soup_rows if r["model"] == "best.keras")
    rows = [{"name": "best.keras", "kind": "checkpoint", "accuracy": best_alone}]
    chosen_from = {"best.keras": models[0]}
    if members != ["best.keras"]:
        rows.append({"name": "soup", "kind": "soup", "accuracy": [r["soup"] for r in soup_rows if r["joined"]][-1],
                     "members": members})
        chosen_from["soup"] = soup
    for base in list(rows):
        tau, grid = choose_tau(chosen_from[base["name"]], val.images, labels, priors, flip_tta=args.flip_tta)
        name = f"{base['name']} adjusted"
        rows.append({"name": name, "kind": f"adjusted {base['kind']}", "tau": tau,
                     "accuracy": next(g["accuracy"] for g in grid if g["tau"] == tau)})
        chosen_from[name] = adjusted(chosen_from[base["name"]], priors, tau)
    chosen = choose_candidate(rows, args.soup_margin / 100)
    candidate = chosen_from[chosen["name"]]
    plain, flipped = score(candidate, False), score(candidate, True)
    flip_tta = flipped > plain

    where = f"{len(val)} validation faces{' (with their shifted copy)' if args.shifted_copy else ''}" \
            f"{', flip TTA' if args.flip_tta else ''}"
    print(f"{run}: {state.epochs_done if state else '?'} epochs done, best epoch {best_epoch}; "
          f"{len(kept)} other checkpoint(s) kept")
    print(f"validation accuracy ({where}):")
    for r in rows:
        extra = f", tau {r['tau']}" if "tau" in r else f", members {', '.join(r['members'])}" if "members" in r else ""
        print(f"  {r['name']:<20} {100 * r['accuracy']:.2f} %{extra}"
              + ("  <- chosen" if r is chosen else f"  ({r['why']})" if "why" in r else ""))
    print(f"chosen: {chosen['name']}; on validation {100 * plain:.2f} % without TTA, {100 * flipped:.2f} % with flip "
          f"TTA: serve it {'with' if flip_tta else 'without'} flip TTA")
    report = {"run_dir": str(run), "epochs_done": state.epochs_done if state else None, "best_epoch": best_epoch,
              "validation_faces": len(val), "flip_tta": args.flip_tta, "shifted_copy": args.shifted_copy,
              "seed": args.seed, "soup_margin_points": args.soup_margin, "soup": soup_rows, "candidates": rows,
              "chosen": chosen["name"], "val_accuracy_no_tta": plain, "val_accuracy_flip_tta": flipped,
              "serve_flip_tta": flip_tta}
    written = save_with_report(candidate, out / "candidate.keras", report, "finish")
    if written is None:
        return 2
    test = ["python", "-m", "fer_keras.evaluate", "--model", str(out / "candidate.keras"), *_data_flags(argv),
            *(["--flip-tta"] if flip_tta else []), "--out", str(out / "test")]
    print(f"wrote {out / 'candidate.keras'} and {written}\nthe test split, once: {shlex.join(test)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
