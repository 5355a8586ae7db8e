"""``python -m fer_keras.adjust``: correct a trained model for its training data's class frequencies.

A classifier trained on imbalanced data (FER+ has 116 disgust and 536 fear
faces among 24,925) learns the training frequencies as part of its scores and
calls rare expressions less often than it should. Logit adjustment (Menon et
al., "Long-tail learning via logit adjustment", ICLR 2021) subtracts
``tau * log(prior)`` from each class's logit after training; ``tau`` 1 would
undo the priors in full, small values move borderline faces towards the rare
classes. The correction lives in the ``logits`` layer's bias, so the adjusted
model is an ordinary model: every command, the export for TF Serving and the
explanations use it as they are.

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

import keras
import numpy as np

from fer_keras.cli import add_data_arguments, add_validation_arguments, save_with_report, validation_faces
from fer_keras.data.readers.common import DatasetError

GRID = tuple(round(0.05 * k, 2) for k in range(11))  # 0 .. 0.5: a first look at FER+ validation lost 8 points at 0.75


def class_priors(faces, soft: bool = False) -> np.ndarray:
    """The training faces' class shares: majority labels counted, or (``soft``) the mean target
    distribution (FER+'s annotator votes; one-hot elsewhere); a class without a face counts as half a
    face, so its log stays finite."""
    k = faces.taxonomy.num_classes
    if soft:
        counts = np.asarray(faces.soft, np.float64).sum(axis=0)
    else:
        counts = np.bincount(np.asarray(faces.labels), minlength=k).astype(np.float64)
    counts = np.where(counts > 0, counts, 0.5)
    return counts / counts.sum()


def adjusted(model: keras.Model, priors: np.ndarray, tau: float) -> keras.Model:
    """A copy of ``model`` whose ``logits`` bias is lowered by ``tau * log(priors)``."""
    if tau < 0:
        raise ValueError(f"tau must be 0 or more; got {tau}")
    layer = _logits_layer(model)
    if len(priors) != layer.units:
        raise ValueError(f"{len(priors)} class priors for a model of {layer.units} classes")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    kernel, bias = copy.get_layer("logits").get_weights()
    copy.get_layer("logits").set_weights([kernel, (bias - tau * np.log(priors)).astype(bias.dtype)])
    return copy


def _logits_layer(model) -> keras.layers.Dense:
    try:
        layer = model.get_layer("logits")
    except (ValueError, AttributeError):
        layer = None
    if not isinstance(layer, keras.layers.Dense) or not layer.use_bias:
        raise ValueError("logit adjustment needs a Keras model with a 'logits' Dense layer (a .keras file or a "
                         "shipped model name; not a SavedModel)")
    return layer


def choose_tau(model: keras.Model, images: np.ndarray, labels: np.ndarray, priors: np.ndarray, *,
               grid=GRID, flip_tta: bool = False, batch_size: int = 128) -> tuple[float, list[dict]]:
    """The ``tau`` of ``grid`` with the best accuracy on ``images`` (ties: the smaller), and each one's
    accuracy and recall per class. The logits are computed once; the adjustment is added to them, and with
    ``flip_tta`` each view is adjusted before the two probabilities are averaged, as the adjusted model does."""
    from fer_keras.evaluation import predict_logits

    views = [predict_logits(model, images, batch_size)]
    if flip_tta:
        views.append(predict_logits(model, images[:, :, ::-1], batch_size))
    labels = np.asarray(labels)
    k = len(priors)
    rows = []
    for tau in grid:
        probs = np.mean([_softmax(v - tau * np.log(priors)) for v in views], axis=0)
        predicted = probs.argmax(1)
        recall = [float((predicted[labels == c] == c).mean()) if (labels == c).any() else None
                  for c in range(k)]  # None: no validation face of that class
        rows.append({"tau": float(tau), "accuracy": float((predicted == labels).mean()), "recall": recall})
    best = max(rows, key=lambda r: (round(r["accuracy"], 6), -r["tau"]))
    return best["tau"], rows


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.adjust", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a .keras file or a shipped model name")
    add_data_arguments(p)
    p.add_argument("--soft-labels", action="store_true",
                   help="priors from the annotators' vote distributions (FER+), as a --soft-labels run trained on")
    p.add_argument("--tau", default="auto",
                   help="strength of the correction (0: none, 1: the priors undone in full), or auto: the best "
                        f"validation accuracy of {GRID[0]}..{GRID[-1]} in steps of 0.05. Default: %(default)s")
    add_validation_arguments(p, "choose")
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
        _logits_layer(model)
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
