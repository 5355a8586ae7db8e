"""Accuracy report for a model on decoded faces: the numbers a paper table needs.

Reports overall accuracy, per-class recall / precision / F1, macro-F1, the
confusion matrix (rows: true class, columns: predicted), accuracy per source
and per subset (FER2013's PublicTest / PrivateTest), and accuracy without the
faces that leaked from the training data. Faces of classes the model does not
have (FER2013's neutral faces for a six-class model) get their own summary:
which of the model's classes they come out as, and how confident it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_keras.data.faces import FaceSet


def flip_averaged(outputs_of, faces) -> dict:
    """Flip test-time augmentation: ``outputs_of(faces)`` averaged, output by output, with the outputs
    for the mirrored faces. ``faces`` is ``[N, H, W, C]`` (NumPy, TensorFlow or JAX: any array that
    slices with a negative step); ``outputs_of`` returns a dict of ``[N, ...]`` arrays. Evaluation
    and the SavedModel export both use this one definition."""
    plain, mirrored = outputs_of(faces), outputs_of(faces[:, :, ::-1])
    return {k: (plain[k] + mirrored[k]) / 2 for k in plain}


def predict_probabilities(model, images: np.ndarray, batch_size: int = 128, flip_tta: bool = False) -> np.ndarray:
    """Class probabilities for uint8 ``[N, H, W, C]`` faces (optionally averaged with the mirrored faces)."""

    def outputs_of(faces):
        return {"probabilities": model.predict(faces, batch_size=batch_size, verbose=0)["probabilities"]}

    faces = np.asarray(images, np.float32)
    outputs = flip_averaged(outputs_of, faces) if flip_tta else outputs_of(faces)
    return np.asarray(outputs["probabilities"])


def predict_logits(model, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """The ``logits`` output (before the softmax) of a Keras model for ``[N, H, W, C]`` faces."""
    return np.asarray(model.predict(np.asarray(images, np.float32), batch_size=batch_size, verbose=0)["logits"])


# A class whose recall's 95 % interval is wider than this is flagged as having too few faces to tell
# (about 60 faces at 50 % recall; FER+'s 16 test disgust faces give an interval of about 45 points).
TOO_WIDE = 0.25


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (95 % for ``z`` 1.96): unlike the normal
    approximation it stays inside [0, 1] and holds for small ``n`` and proportions near 0 or 1."""
    if n <= 0:
        return 0.0, 1.0
    p = hits / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def classification_report(labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, per-class recall (with its 95 % Wilson interval, and ``too_few_to_tell`` where that
    interval is wider than ``TOO_WIDE``) / precision / F1, macro-F1 and confusion matrix."""
    k = len(classes)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    true_counts, pred_counts, hits = cm.sum(1), cm.sum(0), np.diag(cm)
    recall = np.divide(hits, true_counts, out=np.zeros(k), where=true_counts > 0)
    precision = np.divide(hits, pred_counts, out=np.zeros(k), where=pred_counts > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = true_counts > 0
    return {
        "n": int(len(labels)),
        "accuracy": float(hits.sum() / max(1, len(labels))),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {
                "support": int(true_counts[i]),
                "recall": float(recall[i]),
                "recall_ci95": list(wilson_interval(int(hits[i]), int(true_counts[i]))),
                "too_few_to_tell": bool(np.subtract(*wilson_interval(int(hits[i]), int(true_counts[i]))[::-1])
                                        > TOO_WIDE),
                "precision": float(precision[i]),
                "f1": float(f1[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
    }


def evaluate_faces(
    model, faces: FaceSet, *, leaked: np.ndarray | None = None, batch_size: int = 128, flip_tta: bool = False,
) -> dict:
    """The full report for ``model`` on ``faces``.

    Args:
        model: a Keras model with a ``probabilities`` output.
        faces: the faces to evaluate.
        leaked: boolean mask of faces that also appear in the training data;
            adds ``accuracy_without_leaked``.
        batch_size: prediction batch size.
        flip_tta: average with the horizontally mirrored faces.
    """
    if len(faces) == 0:
        raise ValueError("no faces to evaluate")
    predicted = predict_probabilities(model, faces.images, batch_size, flip_tta).argmax(1)
    report = classification_report(faces.labels, predicted, faces.taxonomy.classes)
    report["classes"] = list(faces.taxonomy.classes)
    report["flip_tta"] = flip_tta
    correct = predicted == faces.labels
    report["by_source"] = {str(s): float(correct[faces.sources == s].mean()) for s in sorted(set(faces.sources))}
    subsets = sorted({s for s in faces.subsets if s})
    if subsets:
        report["by_subset"] = {
            str(s): {"n": int((faces.subsets == s).sum()), "accuracy": float(correct[faces.subsets == s].mean())}
            for s in subsets
        }
    if leaked is not None:
        report["leaked"] = int(leaked.sum())
        report["accuracy_without_leaked"] = float(correct[~leaked].mean()) if (~leaked).any() else None
    return report


def unseen_class_report(model, faces: FaceSet, model_classes: tuple[str, ...], *, batch_size: int = 128,
                        flip_tta: bool = False) -> dict:
    """Where the faces of classes outside ``model_classes`` go.

    Args:
        model: a Keras model with a ``probabilities`` output over ``model_classes``.
        faces: faces in a wider class view (e.g. seven classes with neutral).
        model_classes: the model's classes, in its output order.
        batch_size: prediction batch size.
        flip_tta: average with the horizontally mirrored faces.

    Returns:
        Per unseen class present in ``faces``: ``n``, ``predicted`` (share of its
        faces given each model class) and ``mean_top_probability``.
    """
    report = {}
    for index, name in enumerate(faces.taxonomy.classes):
        chosen = faces.labels == index
        if name in model_classes or not chosen.any():
            continue
        probs = predict_probabilities(model, faces.images[chosen], batch_size, flip_tta)
        predicted = probs.argmax(1)
        report[name] = {
            "n": int(chosen.sum()),
            "predicted": {c: float((predicted == j).mean()) for j, c in enumerate(model_classes)},
            "mean_top_probability": float(probs.max(1).mean()),
        }
    return report


def fixed_sample(source: str, root: str | Path, classes: list[str], size: int, every: int = 10) -> FaceSet:
    """A fixed sample of a dataset's test faces: every ``every``-th image of the
    test split of ``source`` (a reader name: fer2013, ferplus, ...) sorted by
    name, in the model's class view, decoded as in training."""
    from fer_keras.data.faces import load_faces
    from fer_keras.data.sources import READERS
    from fer_keras.data.taxonomy import TAXONOMIES

    if source not in READERS:
        raise ValueError(f"unknown sample source {source!r}; choose one of: {', '.join(READERS)}")
    taxonomy = next(t for t in TAXONOMIES.values() if list(t.classes) == list(classes))
    records = sorted((r for r in READERS[source](str(root))[0]
                      if r.split == "test" and taxonomy.index(r.emotion) is not None), key=lambda r: r.name)
    faces, _, _ = load_faces(records[::every], taxonomy, size, progress=False)
    return faces


def sample_accuracy(model, source: str, root: str | Path, classes: list[str], size: int, every: int = 10,
                    flip_tta: bool = False) -> dict:
    """Accuracy of ``model`` on :func:`fixed_sample` (with flip TTA when the model ships with it)."""
    faces = fixed_sample(source, root, classes, size, every)
    predicted = predict_probabilities(model, faces.images, flip_tta=flip_tta).argmax(1)
    return {"source": source, "every": every, "n": int(len(faces)),
            "accuracy": round(float((predicted == faces.labels).mean()), 4), "flip_tta": flip_tta}


def crop_detected_faces(faces: FaceSet, detector, *, align: bool = True,
                        level: bool | None = None) -> tuple[FaceSet, list[str]]:
    """Whole photographs cut to faces as the video pipeline cuts them: each image is read again from
    its file (at its own resolution), ``detector`` finds its faces, and the most confident one is
    cropped (``fer_keras.detection.crop_face``, keypoint framing unless ``align`` is False) at the
    faces' size. Faces with no file (CSV sources) are detected on their stored pixels.

    Returns:
        (the faces that had one, cut to it; the names of the images with none)
    """
    import cv2

    from fer_keras.detection import LEVEL_EYES, crop_face, read_rgb

    size = faces.images.shape[1]
    keep, missing = [], []
    images = faces.images.copy()
    for i, name in enumerate(faces.names):
        path = Path(str(name))
        if path.is_file():
            rgb = read_rgb(str(path))
        else:
            gray = cv2.resize(faces.images[i, ..., 0], (4 * size, 4 * size), interpolation=cv2.INTER_CUBIC)
            rgb = cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)
        found = detector.detect(rgb)
        if not found:
            missing.append(str(name))
            continue
        best = max(found, key=lambda f: f.score)
        images[i] = crop_face(rgb, best, size, align=align, level=LEVEL_EYES if level is None else level)
        keep.append(i)
    cropped = faces.select(np.array(keep, dtype=np.int64))
    cropped.images = images[np.array(keep, dtype=np.int64)] if keep else images[:0]
    return cropped, missing

