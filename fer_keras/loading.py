"""Loading a trained classifier from a ``.keras`` file or a SavedModel folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

# Importing registers the custom layers and optimizers the .keras files refer to.
import fer_keras.models  # noqa: F401
import fer_keras.optim  # noqa: F401
from fer_keras import pretrained
from fer_keras.data.taxonomy import infer_taxonomy  # noqa: F401 (callers import it from here too)
from fer_keras.pretrained import as_float32  # noqa: F401 (callers import it from here too)


class ModelLoadError(ValueError):
    """A model file is missing or is not a classifier this package made."""


class SavedModelClassifier:
    """A SavedModel's ``serving_default`` behind the ``predict`` call evaluation uses."""

    def __init__(self, path: Path):
        self._loaded = tf.saved_model.load(str(path))
        try:
            self._serve = self._loaded.signatures["serving_default"]
        except KeyError:
            raise ModelLoadError(f"{path} has no serving_default signature") from None
        spec = self._serve.structured_input_signature[1]
        if len(spec) != 1:
            raise ModelLoadError(f"{path}: serving_default takes {sorted(spec)}, expected one face input")
        self._input_name, self._spec = next(iter(spec.items()))
        self.input_shape = tuple(self._spec.shape)
        self.class_names = None
        if "labels" in self._loaded.signatures:
            self.class_names = [c.decode() for c in self._loaded.signatures["labels"]()["class_names"].numpy()]

    def predict(self, images: np.ndarray, batch_size: int = 128, verbose: int = 0) -> dict[str, np.ndarray]:
        outs = []
        for start in range(0, len(images), batch_size):
            batch = tf.constant(
                np.clip(images[start : start + batch_size], 0, 255).astype(self._spec.dtype.as_numpy_dtype)
            )
            outs.append(self._serve(**{self._input_name: batch})["probabilities"].numpy())
        return {"probabilities": np.concatenate(outs)}


def load_classifier(path: str | Path):
    """A ``.keras`` model (loaded in Keras safe mode), a weights manifest (``NAME.json`` of
    ``fer_keras.pretrained``'s format, as ``fer_keras.portable train`` writes), a SavedModel folder
    (version folder or its parent), or the name of a model shipped in the package
    (``fer_keras.pretrained.available()``, e.g. "gimefive-fer2013")."""
    p = Path(path)
    if p.suffix in (".json", ".keras") or (not p.exists() and str(path) in pretrained.available()):
        try:
            return pretrained.load_keras_model(p if p.exists() or p.suffix else str(path))
        except pretrained.PretrainedError as err:
            raise ModelLoadError(str(err)) from None
    if p.is_dir():
        if not (p / "saved_model.pb").is_file():
            versions = sorted(int(v.name) for v in p.iterdir() if v.name.isdigit() and (v / "saved_model.pb").is_file())
            if not versions:
                raise ModelLoadError(f"{p} holds no saved_model.pb and no numbered version folders")
            p = p / str(versions[-1])
        return SavedModelClassifier(p)
    shipped = ", ".join(pretrained.available()) or "none"
    raise ModelLoadError(f"{p} is neither a .keras file, a weights manifest (.json), a SavedModel folder nor a "
                         f"shipped model name ({shipped})")


class EnsembleClassifier:
    """Several classifiers of one class view behind one ``predict``: the mean of their probabilities."""

    def __init__(self, members: list, names: list[str]):
        if len(members) < 2:
            raise ModelLoadError("an ensemble needs at least two models")
        views = [infer_taxonomy(m) for m in members]
        if len({v.name for v in views}) > 1:
            described = ", ".join(f"{n} ({v.name} classes)" for n, v in zip(names, views))
            raise ModelLoadError(f"the ensemble's models have different class views: {described}")
        shapes = {tuple(m.input_shape[1:3]) for m in members}
        if len(shapes) > 1:
            raise ModelLoadError(f"the ensemble's models take different face sizes: {sorted(shapes)}")
        self.members, self.names = members, list(names)
        self.class_names = list(views[0].classes)
        self.input_shape = members[0].input_shape

    def predict(self, images: np.ndarray, batch_size: int = 128, verbose: int = 0) -> dict[str, np.ndarray]:
        probs = [np.asarray(m.predict(images, batch_size=batch_size, verbose=0)["probabilities"], np.float64)
                 for m in self.members]
        return {"probabilities": np.mean(probs, axis=0).astype(np.float32)}


def load_classifiers(paths: list[str | Path]):
    """One model (:func:`load_classifier`) or, for several, their :class:`EnsembleClassifier`."""
    if len(paths) == 1:
        return load_classifier(paths[0])
    return EnsembleClassifier([load_classifier(p) for p in paths], [str(p) for p in paths])


