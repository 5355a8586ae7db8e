"""The LiteRT (edge) file: written by fer_keras.export --format litert, read back by every command that takes a
model, equal to the Keras model within its quantisation's error, and refusing what it cannot answer."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from fer_keras.data.taxonomy import SEVEN, SIX
from fer_keras.export import LITERT_QUANTIZE as CLI_QUANTIZE
from fer_keras.export import main as export_main
from fer_keras.exporting import LITERT_QUANTIZE, export_litert
from fer_keras.loading import LiteRTClassifier, ModelLoadError, load_classifier
from fer_keras.models import build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model():
    return build_model("gimefive", width=1 / 16)


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(0).integers(0, 256, (24, 64, 64, 1), dtype=np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory, model, faces):
    folder = tmp_path_factory.mktemp("edge")
    return {q: export_litert(model, folder / f"tiny-{q}.tflite", SIX.classes, quantize=q,
                             calibration=faces if q == "int8" else None, source="tiny")
            for q in LITERT_QUANTIZE}


def test_each_quantisation_answers_as_the_keras_model_within_its_error(model, faces, files):
    reference = np.asarray(model.predict(faces.astype(np.float32), verbose=0)["probabilities"])
    tolerance = {"none": 1e-5, "fp16": 5e-3, "int8": 0.05}
    for quantize, path in files.items():
        lite = load_classifier(path)  # every command's loader takes the file
        assert isinstance(lite, LiteRTClassifier) and lite.class_names == list(SIX.classes)
        got = lite.predict(faces, batch_size=10)["probabilities"]  # batches of 10, 10 and 4
        assert got.shape == reference.shape
        assert np.abs(got - reference).max() < tolerance[quantize], quantize
        manifest = json.loads(path.with_suffix(".json").read_text())
        assert manifest["quantize"] == quantize and manifest["face_size"] == 64 and manifest["source"] == "tiny"
    sizes = {q: p.stat().st_size for q, p in files.items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["none"]
    # whole grey levels as floats are taken (evaluate passes float32); scaled faces are refused
    lite = load_classifier(files["int8"])
    assert np.allclose(lite.predict(faces.astype(np.float32))["probabilities"], lite.predict(faces)["probabilities"])
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        lite.predict(faces.astype(np.float32) / 255)
    with pytest.raises(ValueError, match=r"takes faces \[N, 64, 64, 1\]"):
        lite.predict(np.zeros((2, 48, 48, 1), np.uint8))


def test_flip_averaging_inside_the_file(tmp_path, model, faces):
    path = export_litert(model, tmp_path / "tta.tflite", SIX.classes, flip_tta=True)
    x = faces.astype(np.float32)
    mean = (np.asarray(model.predict(x, verbose=0)["probabilities"])
            + np.asarray(model.predict(x[:, :, ::-1], verbose=0)["probabilities"])) / 2
    assert np.abs(load_classifier(path).predict(faces)["probabilities"] - mean).max() < 1e-5


def test_files_that_are_not_what_they_claim_get_one_clear_error(tmp_path, files):
    bad = tmp_path / "notes.tflite"
    bad.write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ModelLoadError, match="no readable manifest"):
        load_classifier(bad)
    manifest = json.loads(files["none"].with_suffix(".json").read_text())
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    bad.with_suffix(".json").write_text(json.dumps({**manifest, "sha256": digest}))
    with pytest.raises(ModelLoadError, match="is not a LiteRT model"):
        load_classifier(bad)
    # a six-class file under a seven-class manifest (a file renamed or a manifest copied from another model)
    seven = tmp_path / "seven.tflite"
    shutil.copy(files["none"], seven)
    seven.with_suffix(".json").write_text(json.dumps({**manifest, "classes": list(SEVEN.classes)}))
    with pytest.raises(ModelLoadError, match="answers 6 classes but its manifest names 7"):
        load_classifier(seven)
    # a file changed after its manifest was written
    shutil.copy(files["fp16"], tmp_path / "swapped.tflite")
    (tmp_path / "swapped.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="checksum differs"):
        load_classifier(tmp_path / "swapped.tflite")
    with pytest.raises(ValueError, match="calibration faces"):
        export_litert(build_model("gimefive", width=1 / 16), tmp_path / "x.tflite", SIX.classes, quantize="int8")
    with pytest.raises(ValueError, match=r"ends in \.tflite"):
        export_litert(build_model("gimefive", width=1 / 16), tmp_path / "x.lite", SIX.classes)


def test_the_export_command_writes_a_litert_file_and_refuses_wrong_flags(tmp_path, model, capsys):
    assert CLI_QUANTIZE == LITERT_QUANTIZE
    keras_file = tmp_path / "tiny.keras"
    model.save(keras_file)
    out = tmp_path / "edge" / "tiny.tflite"
    assert export_main([str(keras_file), "--format", "litert", "--quantize", "fp16", "--out", str(out)]) == 0
    assert load_classifier(out).quantize == "fp16"
    for argv, message in (([str(keras_file), "--format", "litert"], "needs --out FILE.tflite"),
                          ([str(keras_file), "--format", "litert", "--quantize", "int8", "--out", str(out)],
                           "needs --data"),
                          ([str(keras_file), "--quantize", "fp16"], "go with --format litert")):
        with pytest.raises(SystemExit):
            export_main(argv)
        assert message in capsys.readouterr().err
