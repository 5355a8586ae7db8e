"""SavedModel export: layout TF Serving reads, outputs equal to the Keras model."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from fer_keras.data.taxonomy import SIX
from fer_keras.export import main as export_main
from fer_keras.exporting import WARMUP_FILE, export_saved_model, next_version
from fer_keras.models import build_model


@pytest.fixture(scope="module")
def model():
    return build_model("gimefive", width=1 / 16)


def test_export_round_trip(tmp_path, model):
    path = export_saved_model(model, tmp_path, "gimefive", SIX.classes)
    assert path == tmp_path / "gimefive" / "1"
    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]
    assert set(serve.structured_input_signature[1]) == {"face"}
    assert serve.structured_input_signature[1]["face"].dtype == tf.uint8
    faces = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3)).astype(np.uint8)
    out = serve(face=tf.constant(faces))
    expected = np.asarray(model(faces.astype(np.float32))["probabilities"])
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(out["class_id"].numpy(), expected.argmax(1))
    gray = serve(face=tf.constant(faces[..., :1]))["probabilities"].numpy()
    assert gray.shape == (5, 6)
    names = [c.decode() for c in loaded.signatures["labels"]()["class_names"].numpy()]
    assert names == list(SIX.classes)
    assert (path / "assets" / "labels.txt").read_text().split() == list(SIX.classes)


def test_flip_tta_export_serves_the_mean_of_each_face_and_its_mirror(tmp_path, model):
    path = export_saved_model(model, tmp_path, "gimefive", SIX.classes, flip_tta=True)
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    faces = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 1)).astype(np.uint8)
    x = faces.astype(np.float32)
    plain, mirrored = np.asarray(model(x)["probabilities"]), np.asarray(model(x[:, :, ::-1])["probabilities"])
    assert not np.allclose(plain, mirrored, atol=1e-4)  # the mirror image does change the prediction
    out = serve(face=tf.constant(faces))
    np.testing.assert_allclose(out["probabilities"].numpy(), (plain + mirrored) / 2, atol=1e-5)
    np.testing.assert_array_equal(out["class_id"].numpy(), ((plain + mirrored) / 2).argmax(1))


def test_a_bfloat16_export_serves_float32_answers_close_to_float32_and_float32_maps(tmp_path, model):
    path = export_saved_model(model, tmp_path, "gimefive", SIX.classes, precision="bfloat16")
    loaded = tf.saved_model.load(str(path))
    faces = np.random.default_rng(2).integers(0, 256, (6, 64, 64, 1)).astype(np.uint8)
    out = loaded.signatures["serving_default"](face=tf.constant(faces))
    expected = np.asarray(model(faces.astype(np.float32))["probabilities"])
    assert out["probabilities"].dtype == tf.float32 and out["logits"].dtype == tf.float32
    assert np.abs(out["probabilities"].numpy() - expected).max() < 0.02  # bfloat16 keeps 8 bits of mantissa
    explained = loaded.signatures["gradcam"](face=tf.constant(faces))
    assert explained["heatmap"].dtype == tf.float32  # explanations stay float32: the same model's as exported
    np.testing.assert_allclose(explained["probabilities"].numpy(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="precision must be one of"):
        export_saved_model(model, tmp_path, "x", SIX.classes, precision="int4")


def test_warmup_records_are_prediction_logs(tmp_path, model):
    path = export_saved_model(model, tmp_path, "fer", SIX.classes)
    records = list(tf.data.TFRecordDataset(str(path / "assets.extra" / WARMUP_FILE)).as_numpy_iterator())
    assert len(records) == 2
    log = prediction_log_pb2.PredictionLog.FromString(records[0])
    assert log.predict_log.request.model_spec.name == "fer"
    assert tf.make_ndarray(log.predict_log.request.inputs["face"]).shape == (1, 64, 64, 3)


def test_versions_increase_and_never_overwrite(tmp_path, model):
    (tmp_path / "m" / "7").mkdir(parents=True)
    (tmp_path / "m" / "notes").mkdir()
    assert next_version(tmp_path / "m") == 8
    assert export_saved_model(model, tmp_path, "m", SIX.classes).name == "8"
    with pytest.raises(FileExistsError):
        export_saved_model(model, tmp_path, "m", SIX.classes, version=8)
    # Nothing half-written is left beside the versions.
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["7", "8", "notes"]


def test_export_cli(tmp_path, model, capsys):
    model.save(tmp_path / "best.keras")
    assert export_main([str(tmp_path / "best.keras"), "--base", str(tmp_path / "models"), "--name", "g"]) == 0
    assert (tmp_path / "models" / "g" / "1" / "saved_model.pb").is_file()
    assert export_main([str(tmp_path / "missing.keras")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, model):
    """Two members (the second freshly initialised: other weights) exported as one flip-TTA ensemble with
    ``python -m fer_keras.export --ensemble``: (folder of the members and the export, the other member)."""
    folder = tmp_path_factory.mktemp("ensemble")
    other = build_model("gimefive", width=1 / 16)
    model.save(folder / "a.keras")
    other.save(folder / "b.keras")
    assert export_main(["--ensemble", str(folder / "a.keras"), str(folder / "b.keras"), "--flip-tta",
                        "--base", str(folder / "models"), "--name", "ens"]) == 0
    return folder, other


def _ensemble_mean(members, x):
    """The mean over the members of each member's mean over the faces and their mirror images."""
    return np.mean([(np.asarray(m(x)["probabilities"]) + np.asarray(m(x[:, :, ::-1])["probabilities"])) / 2
                    for m in members], axis=0)


def test_an_ensemble_serves_the_mean_of_its_members(tmp_path, model, ensemble, capsys):
    folder, other = ensemble
    loaded = tf.saved_model.load(str(folder / "models" / "ens" / "1"))
    from fer_keras.explain.methods import CAM_METHODS, SERVED_METHODS

    assert set(loaded.signatures) == {"serving_default", "labels", *(CAM_METHODS[m].signature for m in SERVED_METHODS)}
    faces = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 1)).astype(np.uint8)
    x = faces.astype(np.float32)
    expected = _ensemble_mean([model, other], x)
    out = loaded.signatures["serving_default"](face=tf.constant(faces))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    heat = loaded.signatures["gradcam"](face=tf.constant(faces))
    np.testing.assert_allclose(heat["probabilities"].numpy(), np.asarray(model(x)["probabilities"]), atol=1e-5)
    # The evaluation loader takes the ensemble's SavedModel like any other.
    from fer_keras.loading import load_classifier

    served = load_classifier(folder / "models" / "ens")
    np.testing.assert_allclose(served.predict(faces)["probabilities"], expected, atol=1e-5)
    # Bad ensembles: one clear error each.
    build_model("gimefive", width=1 / 16, num_classes=7).save(tmp_path / "seven.keras")
    assert export_main(["--ensemble", str(folder / "a.keras"), str(tmp_path / "seven.keras"),
                        "--base", str(tmp_path / "models")]) == 2
    assert "different class views" in capsys.readouterr().err
    assert export_main(["--ensemble", str(folder / "a.keras"), "--base", str(tmp_path / "models")]) == 2
    assert "at least two models" in capsys.readouterr().err


def test_a_served_ensemble_answers_the_client_like_a_single_model(model, ensemble):
    from clients.client import EmotionClient
    from serving.config import single_model_config
    from serving.local.server import LocalServer

    folder, other = ensemble
    with LocalServer(single_model_config("ens", str(folder / "models" / "ens")), port=0, poll_seconds=0) as srv:
        assert srv.registry.wait_until_available("ens", 60)
        with EmotionClient(srv.address, "ens", timeout=60) as client:
            faces = np.random.default_rng(3).integers(0, 256, (4, 64, 64, 1)).astype(np.uint8)
            expected = _ensemble_mean([model, other], faces.astype(np.float32))
            np.testing.assert_allclose(client.predict(faces).probabilities, expected, atol=1e-5)
            prediction, heatmaps = client.explain(faces)  # the video client's gradcam call
            assert heatmaps.shape[0] == 4 and client.classes == SIX.classes
            # every served method of the registry, asked for by name; the others: one clear error
            from fer_keras.explain.methods import SERVED_METHODS

            for method in SERVED_METHODS:
                prediction, maps = client.explain(faces, method)
                assert maps.shape[0] == 4 and 0 <= maps.min() and maps.max() <= 1, method
            assert client.explain(faces, "saliency")[1].shape[1:] == (64, 64)
            with pytest.raises(ValueError, match="scorecam is not served"):
                client.explain(faces, "scorecam")
            # a server whose export lacks the method: the video analyzer refuses it before any frame
            from clients.analyzer import AnalyzerConfig, VideoAnalyzer
            from clients.client import SignatureMismatch

            del client.signatures["layercam"]
            with pytest.raises(SignatureMismatch, match="no 'layercam' signature"):
                VideoAnalyzer(client, AnalyzerConfig(detector="none", explain="layercam"))
            VideoAnalyzer(client, AnalyzerConfig(detector="none", explain="gradcam++"))
