"""Shipped pretrained weights: integrity, loading, packing, the serving cache and the CLI defaults."""

import json
import shutil

import numpy as np
import pytest

from fer_keras import pretrained
from fer_keras.data.synthetic import draw_face
from fer_keras.evaluation import fixed_sample
from fer_keras.exporting import serving_base
from fer_keras.loading import ModelLoadError, load_classifier
from fer_keras.models import build_model, trainable_parameters
from fer_keras.pretrained.__main__ import main as pretrained_cli

pytestmark = pytest.mark.slow


def test_the_default_is_the_six_class_fer2013_model():
    import fer_keras

    assert fer_keras.pretrained.load is pretrained.load  # fer_keras.pretrained.load("...") after `import fer_keras`
    assert pretrained.DEFAULT in pretrained.available()
    meta = pretrained.info()
    assert meta["classes"] == ["happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    assert meta["test"]["n"] == 5945


def test_the_seven_class_ferplus_model_ships_beside_it():
    meta = pretrained.info("gimefive-ferplus")
    assert meta["classes"] == ["happiness", "surprise", "sadness", "anger", "disgust", "fear", "neutral"]
    assert meta["test"]["n"] == 3122 and meta["recipe"]["soft_labels"] is True
    assert meta["recipe"]["init_from"] == pretrained.DEFAULT  # started from the six-class model


@pytest.mark.parametrize("name", pretrained.available())
def test_every_shipped_model_is_within_the_size_limit_with_a_card(name):
    meta = pretrained.info(name)
    weights = pretrained.WEIGHTS_DIR / f"{name}.npz"
    assert weights.stat().st_size <= 25 * 2**20 and meta["dtype"] == "float16"
    assert set(meta["test"]["recall"]) == set(meta["classes"])
    card = pretrained.card(name)
    assert card.startswith(f"# Model card: {name}")
    for section in ("Training data", "Recipe", "Test figures", "Intended use", "Failure modes", "Biases"):
        assert section in card, section
    assert f"{meta['test']['accuracy'] * 100:.2f}" in card
    for c in meta["classes"]:  # the card's recall table matches the measured report (stored to 4 places)
        recall = meta["test"]["recall"][c] * 100
        assert any(f"{recall + d:.1f} %" in card for d in (-0.005, 0, 0.005)), c


def test_load_builds_gimefive_with_the_shipped_weights():
    model = pretrained.load()
    assert trainable_parameters(model) == 10_478_086
    with np.load(pretrained.WEIGHTS_DIR / f"{pretrained.DEFAULT}.npz") as data:
        first = data["w000"].astype(np.float32)
    np.testing.assert_array_equal(model.weights[0].numpy(), first)
    faces = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 1)).astype(np.float32)
    probabilities = model.predict(faces, verbose=0)["probabilities"]
    np.testing.assert_allclose(probabilities.sum(1), 1, atol=1e-5)
    # The name works wherever a model path does.
    assert load_classifier(pretrained.DEFAULT).count_params() == model.count_params()


def test_damaged_or_unknown_weights_give_one_clear_error(tmp_path):
    for suffix in (".npz", ".json"):
        shutil.copy(pretrained.WEIGHTS_DIR / f"{pretrained.DEFAULT}{suffix}", tmp_path)
    weights = tmp_path / f"{pretrained.DEFAULT}.npz"
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated download
    with pytest.raises(pretrained.PretrainedError, match="checksum"):
        pretrained.load(pretrained.DEFAULT, tmp_path)
    with pytest.raises(pretrained.PretrainedError, match="no pretrained model 'nope'.*gimefive-fer2013"):
        pretrained.load("nope")
    with pytest.raises(ModelLoadError, match="shipped model name"):
        load_classifier("nope")
    # A truncated or corrupt .keras file is named as such, not as missing.
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK\x03\x04 the first bytes of a zip, cut off")
    with pytest.raises(ModelLoadError, match="broken.keras: it is not a .keras archive") as caught:
        load_classifier(broken)
    assert "not found" not in str(caught.value)


def test_pack_round_trip_in_half_precision(tmp_path):
    model = build_model("gimefive", num_classes=6, input_size=32, width=1 / 16)
    architecture = {"model": "gimefive", "width": 1 / 16, "image_size": 32, "channels": 1}
    path = pretrained.pack(model, "tiny", tmp_path, ["happiness", "surprise", "sadness", "anger", "disgust", "fear"],
                           architecture, {"note": "test"})
    assert path.is_file() and pretrained.available(tmp_path) == ["tiny"]
    assert pretrained.info("tiny", tmp_path)["note"] == "test"
    loaded = pretrained.load("tiny", tmp_path)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    rng = np.random.default_rng(0)
    faces = np.stack([draw_face(e, rng, 32) for e in ("happiness", "fear") * 4])[..., None].astype(np.float32)
    np.testing.assert_allclose(model.predict(faces, verbose=0)["probabilities"],
                               loaded.predict(faces, verbose=0)["probabilities"], atol=2e-3)
    model.weights[0].assign(np.full(model.weights[0].shape, 1e6, np.float32))
    with pytest.raises(ValueError, match="half precision"):
        pretrained.pack(model, "overflow", tmp_path, ["a"] * 6, architecture)


def test_serving_base_exports_once_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_KERAS_CACHE", str(tmp_path))
    base = serving_base()
    assert base == tmp_path / "serving" / pretrained.DEFAULT and (base / "1" / "saved_model.pb").is_file()
    stamp = (base / "1" / "saved_model.pb").stat().st_mtime_ns
    assert serving_base() == base and (base / "1" / "saved_model.pb").stat().st_mtime_ns == stamp
    from fer_keras.loading import SavedModelClassifier

    served = SavedModelClassifier(base / "1")
    assert served.class_names == pretrained.info()["classes"]
    # An export cached by an older version (stamped with the weights alone, fewer signatures) is
    # exported afresh: the video client's default explanation must be served.
    (base / "weights.sha256").write_text(pretrained.weights_digest(pretrained.info()) + "\n")
    assert serving_base() == base and (base / "1" / "saved_model.pb").stat().st_mtime_ns != stamp
    import tensorflow as tf

    from fer_keras.explain.methods import CAM_METHODS, DEFAULT_METHOD

    assert CAM_METHODS[DEFAULT_METHOD].signature in tf.saved_model.load(str(base / "1")).signatures


def test_export_and_explain_default_to_the_shipped_model(tmp_path, capsys):
    from fer_keras.explain.__main__ import main as explain_main
    from fer_keras.export import main as export_main

    assert export_main(["--base", str(tmp_path / "models")]) == 0
    assert (tmp_path / "models" / "gimefive" / "1" / "saved_model.pb").is_file()
    import cv2

    face = tmp_path / "face.png"
    cv2.imwrite(str(face), draw_face("surprise", np.random.default_rng(1), 64))
    assert explain_main([str(face), "--out", str(tmp_path / "explained")]) == 0
    assert any((tmp_path / "explained").iterdir())
    assert export_main(["nope", "--base", str(tmp_path / "models")]) == 2
    assert "shipped model name" in capsys.readouterr().err
    meta = json.loads((pretrained.WEIGHTS_DIR / f"{pretrained.DEFAULT}.json").read_text())
    assert meta["architecture"]["model"] == "gimefive"


def test_command_line_lists_and_prints_cards(capsys):
    assert pretrained_cli(["list"]) == 0
    assert pretrained.DEFAULT in capsys.readouterr().out
    assert pretrained_cli(["card"]) == 0
    assert "# Model card: gimefive-fer2013" in capsys.readouterr().out
    assert pretrained_cli(["card", "nope"]) == 2
    assert "no pretrained model 'nope'" in capsys.readouterr().err


def test_measure_records_the_test_report_and_a_fixed_sample(tmp_path, capsys):
    from tests.conftest import write_image

    six = ["happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    model = build_model("gimefive", num_classes=6, input_size=32, width=1 / 16)
    pretrained.pack(
        model, "tiny", tmp_path, six, {"model": "gimefive", "width": 1 / 16, "image_size": 32, "channels": 1}
    )
    data = tmp_path / "fer2013"
    for i, folder in enumerate(["happy", "sad", "fear", "neutral"] * 6):  # 18 test faces in the six-class view
        write_image(data / "test" / folder / f"PrivateTest_{i:02d}.jpg", seed=i)
    write_image(data / "train" / "happy" / "Training_0.jpg")
    report = {"n": 18, "accuracy": 0.5, "macro_f1": 0.25, "accuracy_without_leaked": 0.5,
              "by_subset": {"PrivateTest": {"n": 18, "accuracy": 0.5}},
              "per_class": {c: {"recall": 0.5} for c in six}}
    (tmp_path / "report.json").write_text(json.dumps(report))
    assert pretrained_cli(["measure", "tiny", "--out", str(tmp_path), "--report", str(tmp_path / "report.json"),
                            "--sample", f"fer2013={data}"]) == 0
    meta = pretrained.info("tiny", tmp_path)
    assert meta["test"]["accuracy"] == 0.5 and meta["test"]["by_subset"] == {"PrivateTest": 0.5}
    assert meta["sample"]["source"] == "fer2013" and meta["sample"]["n"] == 2  # faces 0 and 10 of the 18, by name
    faces = fixed_sample("fer2013", data, six, 32)
    predicted = pretrained.load("tiny", tmp_path).predict(faces.images.astype(np.float32), verbose=0)["probabilities"]
    assert meta["sample"]["accuracy"] == round(float((predicted.argmax(1) == faces.labels).mean()), 4)
    capsys.readouterr()
    assert pretrained_cli(["measure", "tiny", "--out", str(tmp_path), "--sample", str(data)]) == 2
    assert "--sample needs SOURCE=PATH" in capsys.readouterr().err
    assert pretrained_cli(["measure", "tiny", "--out", str(tmp_path), "--sample", f"lfw={data}"]) == 2
    assert "unknown sample source 'lfw'" in capsys.readouterr().err


def test_pack_from_a_run_keeps_the_replaced_weights_and_no_machine_path(tmp_path, monkeypatch):
    """A run's best.keras takes the run's metrics and TTA choice; a model made from the run's checkpoints
    (a soup) does not; the replaced weights' record is kept; the run folder is recorded as named."""
    classes = ["happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "r7"
    run.mkdir(parents=True)
    best = build_model("gimefive", num_classes=6, input_size=32, width=1 / 16)
    best.save(run / "best.keras")
    build_model("gimefive", num_classes=6, input_size=32, width=1 / 16).save(run / "soup.keras")
    config = {"model": "gimefive", "width": 1 / 16, "data": {"image_size": 32}, "run_dir": "/machine/only/r7"}
    (run / "config.json").write_text(json.dumps(config))
    (run / "state.json").write_text(json.dumps({"epochs_done": 36, "best_epoch": 35}))
    (run / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "flip_tta": True}))
    assert pretrained_cli(["pack", "runs/r7/best.keras", "--name", "tiny", "--run-dir", "runs/r7",
                           "--out", "shipped"]) == 0
    meta = pretrained.info("tiny", tmp_path / "shipped")
    assert meta["selected_epoch"] == 35 and meta["run_metrics"]["accuracy"] == 0.5 and meta["flip_tta"] is True
    assert meta["recipe"]["run_dir"] == "runs/r7" and "replaces" not in meta
    assert "/machine/" not in (tmp_path / "shipped" / "tiny.json").read_text()
    manifest = tmp_path / "shipped" / "tiny.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "test": {"accuracy": 0.4}}))
    assert pretrained_cli(["pack", "runs/r7/soup.keras", "--name", "tiny", "--run-dir", "runs/r7",
                           "--no-flip-tta", "--out", "shipped"]) == 0
    meta = pretrained.info("tiny", tmp_path / "shipped")
    assert "run_metrics" not in meta and "selected_epoch" not in meta and meta["run_best_epoch"] == 35
    assert meta["flip_tta"] is False and meta["source"] == "runs/r7/soup.keras"
    assert meta["replaces"]["test"] == {"accuracy": 0.4} and meta["replaces"]["selected_epoch"] == 35
    assert meta["classes"] == classes
    assert pretrained.load("tiny", tmp_path / "shipped").count_params() == best.count_params()
