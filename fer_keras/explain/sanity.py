"""Sanity checks for saliency maps: cascading randomisation (Adebayo et al., "Sanity Checks for
Saliency Maps", NeurIPS 2018).

A map that explains the *model* must change when the model's learned weights are destroyed. Starting
from the output, the weighted layers are randomised one after another (cumulatively, top to bottom),
and after each step the maps of the same faces, for the same classes the trained model predicted, are
compared with the trained model's maps by Spearman's rank correlation (per face, then the mean). A
method whose maps stay close to the trained ones while the layers it should depend on are random
shows the input's structure rather than the model's reasoning.

Randomising a weight array here means shuffling its values: the learned arrangement is gone while the
scale (and the sign constraints of batch-norm variances) is kept, so activations stay in range and
maps do not collapse to zero merely because the weights became tiny.

The verdict is fixed before any measurement: a method **passes** when its mean rank correlation is
below :data:`PASS_BELOW` once every weighted layer from the output down to its target layer
(``last_conv``'s block) is randomised, and stays below it for every further step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

PASS_BELOW = 0.5


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each row of ``a`` with the same row of ``b`` (average ranks for
    ties; 0 where either row is constant)."""
    from scipy.stats import rankdata

    a = rankdata(a.reshape(len(a), -1), axis=1)
    b = rankdata(b.reshape(len(b), -1), axis=1)
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    out = np.zeros(len(a))
    ok = denominator > 0
    out[ok] = (a * b).sum(1)[ok] / denominator[ok]
    return out


def weighted_layers_top_down(model: keras.Model) -> list[str]:
    """Names of the layers holding weights, from the output towards the input (model layer order reversed)."""
    return [layer.name for layer in reversed(model.layers) if layer.weights]


def cascading_randomisation(
    model: keras.Model,
    faces: np.ndarray,
    methods: Sequence[str],
    maps_of: Callable[[keras.Model, str, np.ndarray, np.ndarray], np.ndarray],
    seed: int = 0,
    stop_after: str | None = None,
) -> dict:
    """Rank correlation of each method's maps with the trained model's, layer by layer.

    Args:
        model: the trained model (left unchanged: a copy is randomised).
        faces: ``[N, H, W, C]`` faces.
        methods: method names passed to ``maps_of``.
        maps_of: ``(model, method, faces, class_ids) -> [N, h, w]`` maps.
        seed: seed of the shuffles.
        stop_after: last layer to randomise (default: every weighted layer down to the input).

    Returns:
        ``{"layers": [names in randomisation order], "methods": {method: [mean rho per step]},
        "spread": {method: [standard deviation per step]}, "n": N}``
    """
    rng = np.random.default_rng(seed)
    probabilities = np.asarray(model.predict(faces.astype(np.float32), batch_size=256, verbose=0)["probabilities"])
    class_ids = probabilities.argmax(1)
    trained = {m: maps_of(model, m, faces, class_ids) for m in methods}
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    order = weighted_layers_top_down(copy)
    if stop_after is not None:
        if stop_after not in order:
            raise ValueError(f"{stop_after!r} is not a weighted layer of {model.name}: {', '.join(order)}")
        order = order[: order.index(stop_after) + 1]
    report = {"n": int(len(faces)), "layers": [], "methods": {m: [] for m in methods},
              "spread": {m: [] for m in methods}}
    for name in order:
        layer = copy.get_layer(name)
        for variable in layer.weights:
            values = np.asarray(variable.numpy())
            variable.assign(rng.permutation(values.ravel()).reshape(values.shape))
        report["layers"].append(name)
        for m in methods:
            rho = spearman_rows(trained[m], maps_of(copy, m, faces, class_ids))
            report["methods"][m].append(float(rho.mean()))
            report["spread"][m].append(float(rho.std()))
    return report


def verdicts(report: dict, through: str) -> dict[str, bool]:
    """Pass (True) or fail per method: mean rank correlation below :data:`PASS_BELOW` from the step that
    randomised ``through`` onwards."""
    if through not in report["layers"]:
        raise ValueError(f"{through!r} was not randomised in this report")
    start = report["layers"].index(through)
    return {m: bool(max(values[start:]) < PASS_BELOW) for m, values in report["methods"].items()}
