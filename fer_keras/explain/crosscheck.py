"""The deletion figures cross-checked with a maintained toolkit: Quantus's ``PixelFlipping``.

Quantus (Hedström et al., JMLR 2023) is not a dependency: it pins ``opencv-python``, which would
install a second OpenCV beside the project's ``opencv-python-headless``, and its TensorFlow extra asks
for Keras 2. Its metrics run on Keras 3 models through its own TensorFlow wrapper all the same; install
it without its pins to run the check::

    pip install --no-deps quantus==0.6.0 && pip install pandas scikit-learn cachetools
    python -m fer_keras.explain --faithfulness --quantus 60 --data fer2013=../shared/data/fer2013 --out faith/

``PixelFlipping`` replaces the most relevant pixels, a fixed number per step, with a baseline and
records the explained class's probability after each step. With ``features_in_step`` = pixels / steps
and the ``"mean"`` baseline it is this project's deletion curve with two differences, both kept as
Quantus has them: its curve has no point for the untouched face, and its mean is taken over the face
as already perturbed (ours: the untouched face's mean). The areas are therefore close, not equal;
what must agree is the order of the methods and of each method against the random baselines.
"""

from __future__ import annotations

import numpy as np


def quantus_available() -> bool:
    try:
        import quantus  # noqa: F401
    except Exception:  # noqa: BLE001 - any import failure means "not usable here"
        return False
    return True


def quantus_deletion(model, faces: np.ndarray, maps: np.ndarray, class_ids: np.ndarray, steps: int) -> np.ndarray:
    """Per-face deletion curves by Quantus's ``PixelFlipping``: ``[N, steps]``, the explained class's
    probability after each step (ours have one more point, the untouched face, first).

    Args:
        model: a fer_keras model (its ``probabilities`` output is what Quantus reads).
        faces: ``[N, H, W, 1]`` faces.
        maps: ``[N, h, w]`` maps (resized to the faces here, bilinearly, as our curves do).
        class_ids: ``[N]`` explained classes.
        steps: perturbation steps (the face's pixels must divide evenly).
    """
    import keras
    import quantus

    from fer_keras.explain.cams import resize_map

    n, height, width, channels = faces.shape
    if (height * width) % steps:
        raise ValueError(f"{steps} steps do not divide the {height * width} pixels of a face evenly")
    # Quantus hands the model its faces channels first; the wrapper turns them back and ends in a Softmax
    # layer on the logits (the same probabilities), which Quantus recognises as a softmax top.
    first = keras.Input((channels, height, width), name="face_channels_first")
    logits = model(keras.layers.Permute((2, 3, 1))(first))["logits"]
    probabilities = keras.Model(first, keras.layers.Softmax(name="quantus_softmax")(logits))
    x = np.transpose(faces.astype(np.float32), (0, 3, 1, 2))
    a = np.stack([resize_map(m, width, height) for m in maps])[:, None].astype(np.float32)
    # Break ties as ours do (at random) rather than by pixel index: a vanishing seeded jitter.
    a = a + np.random.default_rng(0).random(a.shape).astype(np.float32) * 1e-6
    metric = quantus.PixelFlipping(features_in_step=height * width // steps, perturb_baseline="mean",
                                   return_auc_per_sample=False, disable_warnings=True, display_progressbar=False)
    curves = np.asarray(metric(model=probabilities, x_batch=x, y_batch=np.asarray(class_ids), a_batch=a,
                               channel_first=True, softmax=True, batch_size=256), np.float64)
    if curves.shape != (n, steps):
        raise RuntimeError(f"Quantus returned curves of shape {curves.shape}, expected {(n, steps)}")
    return curves


def compare_with_quantus(model, predict, faces, maps_of: dict, class_ids, steps: int, seed: int = 0) -> dict:
    """Mean deletion curve's area over the ``steps`` perturbed points per set of maps: ours
    (:func:`fer_keras.explain.faithfulness.perturbation_curves`) beside Quantus's, on the same faces,
    maps and classes, with the largest difference at any one step."""
    from fer_keras.explain.faithfulness import perturbation_curves

    out = {}
    for method, maps in maps_of.items():
        ours = perturbation_curves(predict, faces, maps, class_ids, steps, seed)[0].mean(0)[1:]
        theirs = quantus_deletion(model, faces, maps, class_ids, steps).mean(0)
        area = lambda c: float(np.trapezoid(c, dx=1.0 / (len(c) - 1)))  # noqa: E731
        out[method] = {"ours": area(ours), "quantus": area(theirs),
                       "largest_step_difference": float(np.abs(ours - theirs).max())}
    return out
