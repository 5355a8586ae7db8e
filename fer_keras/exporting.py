"""SavedModel export in the layout TensorFlow Serving reads.

``<base>/<model_name>/<version>/`` holds a SavedModel with signatures:

- ``serving_default``: ``face`` uint8 ``[N, H, W, C]`` (C = 1, or 3 for RGB)
  -> ``probabilities`` float32 ``[N, K]``, ``class_id`` int64 ``[N]``,
  ``logits`` float32 ``[N, K]``; exported with ``flip_tta``, probabilities
  and logits are the mean over each face and its mirror image (flip
  test-time augmentation, chosen on validation data by training);
- ``gradcam``: ``face`` -> ``probabilities``, ``class_id`` and ``heatmap``
  float32 ``[N, h, w]``: the Grad-CAM of the predicted class on the
  activation after the model's ``last_conv`` layer (``block5_relu`` on
  GiMeFive), normalised per face to [0, 1], at that layer's resolution (4x4
  for GiMeFive at 64x64; the client resizes it to the face box), so a thin
  client with no model file can ask for explanations;
- one such signature for every other served method of
  ``fer_keras.explain.methods`` (``gradcam_plus_plus``, ``layercam``;
  ``saliency`` at the input's resolution; ``layercam_fused`` and
  ``gradact_fused`` over the 16x16, 8x8 and 4x4 stages, at 16x16), named by
  that registry;
- ``labels``: no input -> ``class_names`` string ``[K]``, so a client can
  learn the class order from the server itself.

An ensemble (several models of one class view and face size) exports the same
signatures: ``serving_default`` serves the mean of the members' probabilities
(and logits), each flip-averaged when ``flip_tta``; the explanation signatures
explain with the first member (their probabilities are that member's).

The class names are also stored as the asset ``assets/labels.txt``, and
``assets.extra/tf_serving_warmup_requests`` holds warm-up requests that TF
Serving replays before it marks the version available. A version is written
into a hidden folder beside its final place and renamed into place, so a
server polling the base path never sees half a version.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fer_keras.evaluation import flip_averaged
from fer_keras.explain.cams import CAM_METHODS, SERVED_METHODS, cam_tape, gradcam_model

WARMUP_FILE = "tf_serving_warmup_requests"


def next_version(model_dir: Path) -> int:
    """One more than the largest numeric version folder (1 when there is none)."""
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    )
    return max(versions, default=0) + 1


class _ServingModule(tf.Module):
    def __init__(self, models: list[keras.Model], class_names: list[str], labels_file: str, flip_tta: bool = False):
        super().__init__()
        self.members = list(models)
        self.flip_tta = flip_tta
        self.explainer = gradcam_model(self.members[0])
        self.class_names = tf.constant(class_names)
        self.labels_asset = tf.saved_model.Asset(labels_file)

    def _one(self, model, x):
        def outputs_of(faces):
            outputs = model(faces, training=False)
            return {"probabilities": outputs["probabilities"], "logits": outputs["logits"]}

        outputs = flip_averaged(outputs_of, x) if self.flip_tta else outputs_of(x)
        return outputs["probabilities"], outputs["logits"]

    def classify(self, face):
        x = tf.cast(face, tf.float32)
        parts = [self._one(model, x) for model in self.members]
        probabilities = tf.add_n([p for p, _ in parts]) / len(parts)
        logits = tf.add_n([lg for _, lg in parts]) / len(parts)
        return {
            "probabilities": probabilities,
            "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
            "logits": logits,
        }

    def explanation(self, method: str):
        def explain(face):
            heatmap, probabilities, class_id = cam_tape(self.explainer, tf.cast(face, tf.float32), method)
            return {"probabilities": probabilities, "class_id": class_id, "heatmap": heatmap}

        return explain

    def labels(self):
        return {"class_names": self.class_names}


def _write_warmup(path: Path, model_name: str, face_shape: tuple[int, int, int]) -> None:
    # Imported here: only export needs the TF Serving protos.
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for batch in (1, 8):
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
            request.inputs["face"].CopyFrom(tf.make_tensor_proto(np.zeros((batch, *face_shape), np.uint8)))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def export_saved_model(
    model: keras.Model | list[keras.Model], base_path: str | os.PathLike, model_name: str,
    class_names: list[str] | tuple[str, ...], version: int | None = None, flip_tta: bool = False,
) -> Path:
    """Exports ``model`` (or an ensemble of models) for TF Serving and returns the version folder.

    Args:
        model: a Keras model with a ``face`` input and ``probabilities``/``logits`` outputs, or a
            list of such models of one face size and class count: served as their ensemble.
        base_path: the serving base path.
        model_name: the name TF Serving serves it under.
        class_names: class names in output order.
        version: version number; the next free one when None.
        flip_tta: serve the mean prediction of each face and its mirror image.

    Raises:
        FileExistsError: ``version`` already exists.
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    size = models[0].input_shape[1]
    shapes = {(m.input_shape[1], m.get_layer("probabilities").output.shape[-1]) for m in models}
    if len(shapes) > 1:
        raise ValueError(f"the ensemble's models differ in face size or class count: {sorted(shapes)}")
    model_dir = Path(base_path) / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = version or next_version(model_dir)
    final = model_dir / str(version)
    if final.exists():
        raise FileExistsError(f"{final} already exists; versions are never overwritten")
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    try:
        labels_file = staging / "labels.txt"
        labels_file.write_text("\n".join(class_names) + "\n")
        module = _ServingModule(models, list(class_names), str(labels_file), flip_tta)
        face = tf.TensorSpec([None, size, size, None], tf.uint8, name="face")
        signatures = {
            "serving_default": tf.function(module.classify, input_signature=[face]),
            "labels": tf.function(module.labels, input_signature=[]),
            **{CAM_METHODS[m].signature: tf.function(module.explanation(m), input_signature=[face])
               for m in SERVED_METHODS},
        }
        out = staging / "savedmodel"
        tf.saved_model.save(module, str(out), signatures=signatures)
        _write_warmup(out / "assets.extra" / WARMUP_FILE, model_name, (size, size, 3))
        os.rename(out, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def serving_base(name: str | None = None, cache: Path | None = None) -> Path:
    """A TF Serving base path holding the shipped model ``name`` (default: the default model) as
    SavedModel version 1.

    Exported once into ``cache`` (default ``$FER_KERAS_CACHE/serving/<name>``,
    ``FER_KERAS_CACHE`` defaulting to ``~/.cache/fer-keras``) and reused while the
    shipped weights keep their checksums and this version serves the same signatures
    (an export cached by an older version lacked the newer explanation signatures, and
    the video client's default method then failed on it).
    """
    from fer_keras import pretrained
    from fer_keras.data.taxonomy import TAXONOMIES

    name = name or pretrained.DEFAULT
    meta = pretrained.info(name)
    served = sorted({"serving_default", "labels"} | {CAM_METHODS[m].signature for m in SERVED_METHODS})
    digest = pretrained.weights_digest(meta) + " " + ",".join(served)
    root = Path(os.environ.get("FER_KERAS_CACHE", Path.home() / ".cache" / "fer-keras"))
    base = Path(cache) if cache else root / "serving" / name
    stamp = base / "weights.sha256"
    version = base / "1"
    if (version / "saved_model.pb").is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return base
    if version.exists():
        shutil.rmtree(version)
    taxonomy = next(t for t in TAXONOMIES.values() if list(t.classes) == meta["classes"])
    export_saved_model(pretrained.load(name), str(base.parent), base.name, taxonomy.classes, version=1,
                       flip_tta=bool(meta.get("flip_tta", False)))
    stamp.write_text(digest + "\n")
    return base
