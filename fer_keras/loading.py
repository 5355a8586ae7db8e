"""Loading a trained classifier from a ``.keras`` file or a SavedModel folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

# Importing registers the custom layers and optimizers the .keras files refer to.
import fer_keras.models  # noqa: F401
import fer_keras.optim  # noqa: F401
from fer_keras import pretrained
from fer_keras.data.faces import as_uint8_faces
from fer_keras.data.taxonomy import infer_taxonomy  # noqa: F401 (callers import it from here too)
from fer_keras.pretrained import as_float32  # noqa: F401 (callers import it from here too)


class ModelLoadError(ValueError):
    """A model file is missing or is not a classifier this package made."""


LITERT_FORMAT = "fer-keras-litert-1"


def litert_manifest_path(path: str | Path) -> Path:
    """The JSON beside a ``.tflite`` file that says what it classifies (``NAME.tflite`` -> ``NAME.json``)."""
    return Path(path).with_suffix(".json")


class LiteRTClassifier:
    """A LiteRT file written by ``python -m fer_keras.export --format litert`` behind the ``predict``
    call evaluation uses; its manifest (``NAME.json`` beside it) says the classes and is checked
    against the file (checksum, class count, input) before the first face."""

    def __init__(self, path: str | Path, threads: int = 2):
        import hashlib
        import json
        import threading

        from fer_keras.detection import tflite_interpreter

        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        manifest_path = litert_manifest_path(path)
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            raise ModelLoadError(f"{path} has no readable manifest {manifest_path.name} beside it (write LiteRT "
                                 "files with python -m fer_keras.export --format litert)") from None
        if not isinstance(manifest, dict) or manifest.get("format") != LITERT_FORMAT:
            raise ModelLoadError(f"{manifest_path} is not a fer_keras LiteRT manifest ({LITERT_FORMAT})")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
            raise ModelLoadError(f"{path} is not the file its manifest {manifest_path.name} describes "
                                 "(checksum differs: replaced or damaged)")
        try:
            self._interpreter = tflite_interpreter(str(path), threads)
        except (ValueError, RuntimeError) as err:
            raise ModelLoadError(f"{path} is not a LiteRT model: {err}") from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self.class_names = list(manifest["classes"])
        size = int(manifest["face_size"])
        answers = int(self._output["shape"][-1])
        if answers != len(self.class_names):
            raise ModelLoadError(f"{path} answers {answers} classes but its manifest names {len(self.class_names)} "
                                 f"({', '.join(self.class_names)})")
        if self._input["dtype"] != np.uint8 or tuple(self._input["shape"][1:]) != (size, size, 1):
            raise ModelLoadError(f"{path} takes {self._input['dtype'].__name__} {list(self._input['shape'])}, not the "
                                 f"uint8 [N, {size}, {size}, 1] faces its manifest describes")
        self.path, self.manifest, self.quantize = path, manifest, manifest.get("quantize", "none")
        self.input_shape = (None, size, size, 1)
        self._batch = None
        self._lock = threading.Lock()  # one interpreter: one call at a time

    def predict(self, images: np.ndarray, batch_size: int = 64, verbose: int = 0) -> dict[str, np.ndarray]:
        faces = as_uint8_faces(images)
        if faces.ndim != 4 or faces.shape[1:] != self.input_shape[1:]:
            raise ValueError(f"{self.path} takes faces [N, {self.input_shape[1]}, {self.input_shape[2]}, 1]; "
                             f"got {list(faces.shape)}")
        out = []
        with self._lock:
            for start in range(0, len(faces), batch_size):
                chunk = np.ascontiguousarray(faces[start:start + batch_size])
                if self._batch != len(chunk):
                    self._interpreter.resize_tensor_input(self._input["index"], [len(chunk), *faces.shape[1:]])
                    self._interpreter.allocate_tensors()
                    self._batch = len(chunk)
                self._interpreter.set_tensor(self._input["index"], chunk)
                self._interpreter.invoke()
                out.append(np.array(self._interpreter.get_tensor(self._output["index"])))
        k = len(self.class_names)
        return {"probabilities": np.concatenate(out) if out else np.zeros((0, k), np.float32)}


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
    ``fer_keras.pretrained``'s format, as ``fer_keras.portable train`` writes), a LiteRT file
    (``NAME.tflite`` with its manifest, :class:`LiteRTClassifier`), a SavedModel folder
    (version folder or its parent), or the name of a model shipped in the package
    (``fer_keras.pretrained.available()``, e.g. "gimefive-fer2013")."""
    p = Path(path)
    if p.suffix == ".tflite":
        return LiteRTClassifier(p)
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


