"""Final models made from a finished training run, and the rule that picks one, all on validation faces.

Two ways to get a little more from a run after its last epoch, each an ordinary model of the same
architecture (every command, the export for TF Serving and the explanations use it as it is):

- **Weight averages** ("model soups", Wortsman et al. 2022; stochastic weight averaging, Izmailov et al.
  2018): the element-wise mean of checkpoints from one run's tail, which lie close together in weight
  space. Every weight is averaged, BatchNorm's moving statistics included.
- **Logit adjustment** (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021): a classifier
  trained on imbalanced data (FER+ has 116 disgust and 536 fear faces among 24,925) learns the training
  frequencies as part of its scores; subtracting ``tau * log(prior)`` from each logit moves borderline
  faces towards the rare classes. The correction lives in the ``logits`` layer's bias.

:func:`choose_candidate` is the rule ``python -m fer_keras.finish`` applies, fixed before a run ends
so that the choice cannot follow the test split: the highest validation accuracy among the run's
best checkpoint, the greedy soup of its kept checkpoints, and each one logit-adjusted; a soup counts
only where it beats the best checkpoint by ``SOUP_MARGIN`` (about six of FER+'s 6,350 clean +
shifted validation faces; the soups of five FER+ runs added 0.00, 0.06, 0.07, 0.11 and 0.17 points), an
adjustment only where it chose ``tau`` > 0 (``tau`` 0 is the model itself). Ties go to the simpler model: the checkpoint
before a soup, a model before its adjusted copy.
"""

from __future__ import annotations

import keras
import numpy as np

SOUP_MARGIN = 0.001  # validation accuracy a soup must add over the best checkpoint to be chosen (0.1 point)


def average_weights(models: list[keras.Model], names: list[str] | None = None) -> keras.Model:
    """A copy of ``models[0]`` holding the element-wise mean of every model's weights (floating-point
    weights only; counters and other integer variables are the first model's)."""
    if not models:
        raise ValueError("no models to average")
    names = names or [f"model {i + 1}" for i in range(len(models))]
    first = models[0].get_weights()
    stacks = [[w] for w in first]
    for model, name in zip(models[1:], names[1:]):
        weights = model.get_weights()
        shapes = [w.shape for w in weights]
        if len(weights) != len(first) or shapes != [w.shape for w in first]:
            raise ValueError(f"{name} does not have the architecture of {names[0]} (its weights differ in number or "
                             "shape): only checkpoints of one architecture can be averaged")
        for stack, w in zip(stacks, weights):
            stack.append(w)
    mean = [np.mean(np.stack(s), axis=0).astype(s[0].dtype) if np.issubdtype(s[0].dtype, np.floating) else s[0]
            for s in stacks]
    copy = keras.models.clone_model(models[0])
    copy.set_weights(mean)
    return copy


def greedy_soup(models: list[keras.Model], names: list[str], score) -> tuple[keras.Model, list[dict]]:
    """Rank ``models`` by ``score`` (a model -> validation accuracy), then add each, best first, to the
    average if the average's score does not drop. Returns the soup and one row per candidate."""
    alone = [score(m) for m in models]
    order = sorted(range(len(models)), key=lambda i: -alone[i])
    members = [order[0]]
    best = alone[order[0]]
    rows = [{"model": names[order[0]], "alone": alone[order[0]], "soup": best, "joined": True}]
    for i in order[1:]:
        trial = average_weights([models[j] for j in members + [i]], [names[j] for j in members + [i]])
        value = score(trial)
        joined = value >= best
        if joined:
            members.append(i)
            best = value
        rows.append({"model": names[i], "alone": alone[i], "soup": value, "joined": joined})
    soup = average_weights([models[j] for j in members], [names[j] for j in members])
    return soup, rows


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
    layer = logits_layer(model)
    if len(priors) != layer.units:
        raise ValueError(f"{len(priors)} class priors for a model of {layer.units} classes")
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    kernel, bias = copy.get_layer("logits").get_weights()
    copy.get_layer("logits").set_weights([kernel, (bias - tau * np.log(priors)).astype(bias.dtype)])
    return copy


def logits_layer(model) -> keras.layers.Dense:
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




def choose_candidate(rows: list[dict], soup_margin: float = SOUP_MARGIN) -> dict:
    """The row :data:`rows` (each ``{"name", "kind", "accuracy"}`` with ``kind`` one of "checkpoint", "soup",
    "adjusted checkpoint", "adjusted soup", and ``tau`` for the adjusted ones) that the rule picks; each row
    gains ``counted`` (whether the rule let it compete) and ``why`` where it did not. ``rows`` lists the
    simpler models first, which wins ties."""
    checkpoint = next((r for r in rows if r["kind"] == "checkpoint"), None)
    if checkpoint is None:
        raise ValueError("the rows hold no checkpoint to compare the other models with")
    for r in rows:
        r["counted"] = True
        r.pop("why", None)
        if r["kind"].startswith("adjusted") and not r.get("tau"):
            r["counted"], r["why"] = False, "tau 0 chosen: the model itself"
        elif r["kind"].endswith("soup") and r["accuracy"] < checkpoint["accuracy"] + soup_margin - 1e-12:
            r["counted"], r["why"] = False, f"under the checkpoint + {100 * soup_margin:.2f} points"
    return max((r for r in rows if r["counted"]), key=lambda r: round(r["accuracy"], 9))
