"""SavedModel export in the layout TensorFlow Serving reads, and the LiteRT file for devices.

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
from fer_keras.loading import LITERT_FORMAT, litert_manifest_path

WARMUP_FILE = "tf_serving_warmup_requests"


def next_version(model_dir: Path) -> int:
    """One more than the largest numeric version folder (1 when there is none)."""
    versions = (
        [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()] if model_dir.is_dir() else []
    )
    return max(versions, default=0) + 1


PRECISIONS = ("float32", "bfloat16")
FLOAT32_LAYERS = ("logits", "probabilities")  # the head stays float32 under a mixed policy, as in training


def as_mixed_bfloat16(model: keras.Model) -> keras.Model:
    """A copy of ``model`` computing in bfloat16 (float32 weights, cast as they are used; the logits and
    softmax in float32): on CPUs with AMX or AVX512-BF16 and on recent GPUs inference runs about twice
    as fast (BENCHMARKS.md, "Mixed precision")."""

    def bfloat16_layer(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        config = layer.get_config()
        config["dtype"] = "float32" if layer.name in FLOAT32_LAYERS else "mixed_bfloat16"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=bfloat16_layer)
    copy.set_weights(model.get_weights())
    return copy


class _ServingModule(tf.Module):
    def __init__(self, models: list[keras.Model], class_names: list[str], labels_file: str, flip_tta: bool = False,
                 precision: str = "float32"):
        super().__init__()
        # Explanations keep float32: a map's gradients in bfloat16 lose the small differences it is made of.
        self.explainer = gradcam_model(models[0])
        self.members = [as_mixed_bfloat16(m) for m in models] if precision == "bfloat16" else list(models)
        self.flip_tta = flip_tta
        self.class_names = tf.constant(class_names)
        self.labels_asset = tf.saved_model.Asset(labels_file)

    def _one(self, model, x):
        def outputs_of(faces):
            outputs = model(faces, training=False)
            return {k: tf.cast(outputs[k], tf.float32) for k in ("probabilities", "logits")}

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
    precision: str = "float32",
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
        precision: "float32", or "bfloat16": ``serving_default`` computes in bfloat16 (float32 in and
            out; the explanation signatures stay float32).

    Raises:
        FileExistsError: ``version`` already exists.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
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
        module = _ServingModule(models, list(class_names), str(labels_file), flip_tta, precision)
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


LITERT_QUANTIZE = ("none", "fp16", "int8")  # fer_keras.export's flag takes these


def _edge_model(model: keras.Model, flip_tta: bool) -> keras.Model:
    """``model`` behind a fixed one-channel uint8 input (a LiteRT interpreter has no any-channel input: the
    builder's would leave a TensorFlow op no interpreter runs), answering probabilities only; with
    ``flip_tta`` the mean over each face and its mirror image, as the SavedModel serves it."""
    size = model.input_shape[1]
    face = keras.Input((size, size, 1), dtype="uint8", name="face")
    x = keras.ops.cast(face, "float32")
    probabilities = model(x)["probabilities"]
    if flip_tta:
        probabilities = (probabilities + model(keras.ops.flip(x, axis=2))["probabilities"]) / 2
    return keras.Model(face, {"probabilities": probabilities}, name="edge")


def export_litert(model: keras.Model, path: str | os.PathLike, class_names: list[str] | tuple[str, ...], *,
                  quantize: str = "none", flip_tta: bool = False, calibration: np.ndarray | None = None,
                  source: str = "") -> Path:
    """Writes ``model`` as a LiteRT (TFLite) file for phones and small boards, and its manifest beside it.

    The file takes raw faces, uint8 grey levels ``[N, H, W, 1]``, with the preprocessing inside, and
    answers ``probabilities`` ``[N, K]``; built-in operators only (LiteRT's interpreter runs it as is).

    Args:
        model: a fer_keras Keras model (``face`` in, ``probabilities`` out).
        path: the ``.tflite`` file; ``NAME.json`` beside it records the classes, face size, quantisation,
            flip averaging and the file's checksum.
        class_names: class names in output order.
        quantize: "none" (float32), "fp16" (float16 weights, half the size) or "int8" (weights and
            activations in 8 bits, calibrated on ``calibration``).
        flip_tta: average each face with its mirror image inside the file.
        calibration: uint8 faces ``[N, H, W, 1]`` representative of what the model will see (training
            faces), for int8.
        source: what the file was made from (recorded in the manifest).

    Raises:
        ValueError: a path not ending in ``.tflite``, an unknown ``quantize``, int8 without calibration faces.
    """
    import hashlib
    import json

    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"a LiteRT file ends in .tflite; got {path}")
    if quantize not in LITERT_QUANTIZE:
        raise ValueError(f"quantize must be one of {', '.join(LITERT_QUANTIZE)}; got {quantize!r}")
    size = model.input_shape[1]
    options: dict = {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize == "fp16":
        options.update(optimizations=[tf.lite.Optimize.DEFAULT],
                       target_spec={**options["target_spec"], "supported_types": [tf.float16]})
    elif quantize == "int8":
        faces = None if calibration is None else np.asarray(calibration)
        if faces is None or faces.ndim != 4 or faces.shape[1:] != (size, size, 1) or not len(faces):
            raise ValueError(f"int8 needs calibration faces [N, {size}, {size}, 1]; got "
                             f"{None if faces is None else faces.shape}")
        faces = faces.astype(np.uint8)
        options.update(optimizations=[tf.lite.Optimize.DEFAULT],
                       representative_dataset=lambda: ([faces[i:i + 1]] for i in range(len(faces))))
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp.tflite")
    try:
        _edge_model(model, flip_tta).export(str(staging), format="litert", verbose=False,
                                            input_signature=[tf.TensorSpec([None, size, size, 1], tf.uint8)],
                                            **options)
        data = staging.read_bytes()
        manifest = {"format": LITERT_FORMAT, "classes": list(class_names), "face_size": int(size),
                    "input": "uint8 grey levels [N, H, W, 1]", "output": "probabilities [N, K]",
                    "quantize": quantize, "flip_tta": bool(flip_tta), "source": source,
                    "calibration_faces": 0 if calibration is None else int(len(calibration)),
                    "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    litert_manifest_path(path).write_text(json.dumps(manifest, indent=1) + "\n")
    return path


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
