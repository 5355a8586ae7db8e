"""fer_keras.adjust: logit adjustment for the training priors, chosen on validation."""

import json
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from fer_keras import adjust, candidates
from fer_keras.data.taxonomy import SIX
from fer_keras.evaluation import predict_logits, predict_probabilities


def _faces(labels, soft=None):
    labels = np.asarray(labels)
    return SimpleNamespace(labels=labels, taxonomy=SIX, soft=np.eye(6)[labels] if soft is None else soft)


def test_priors_count_labels_or_average_votes():
    p = candidates.class_priors(_faces([0, 0, 0, 1, 2, 2, 3, 4, 5, 5]))
    assert np.allclose(p, np.array([3, 1, 2, 1, 1, 2]) / 10)
    # a class without a face counts as half a face, so its log stays finite
    p = candidates.class_priors(_faces([0, 0, 1]))
    assert np.allclose(p, np.array([2, 1, 0.5, 0.5, 0.5, 0.5]) / 5)
    votes = np.array([[0.5, 0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0.25, 0.75]], np.float32)
    p = candidates.class_priors(_faces([0, 5], soft=votes), soft=True)
    assert np.allclose(p, np.array([0.5, 0.5, 0.5, 0.5, 0.25, 0.75]) / 3.0)  # classes 2 and 3: no votes
    one_hot = _faces([0, 1, 1])
    assert np.allclose(candidates.class_priors(one_hot, soft=True), candidates.class_priors(one_hot))


def _linear_model(bias):
    """Six classes from a face's mean pixel: logits = w * mean + bias (a stand-in with a real 'logits' layer)."""
    face = keras.Input((8, 8, 1))
    mean = keras.layers.GlobalAveragePooling2D()(face)
    logits = keras.layers.Dense(6, name="logits")(mean)
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    model = keras.Model(face, {"logits": logits, "probabilities": probabilities})
    model.get_layer("logits").set_weights([np.linspace(-0.02, 0.02, 6)[None].astype(np.float32),
                                           np.asarray(bias, np.float32)])
    return model


def test_the_adjusted_model_moves_each_logit_by_tau_log_prior_and_leaves_the_original_alone():
    model = _linear_model([2.0, 1.0, 0.5, 0.0, -1.0, -0.5])
    priors = np.array([0.4, 0.2, 0.15, 0.15, 0.02, 0.08])
    faces = np.random.default_rng(0).integers(0, 256, (20, 8, 8, 1)).astype(np.float32)
    before = predict_logits(model, faces)
    out = candidates.adjusted(model, priors, 0.3)
    assert np.allclose(predict_logits(out, faces), before - 0.3 * np.log(priors), atol=1e-5)
    assert np.allclose(predict_logits(model, faces), before)
    with pytest.raises(ValueError, match="6 classes"):
        candidates.adjusted(model, priors[:5] / priors[:5].sum(), 0.3)
    with pytest.raises(ValueError, match="0 or more"):
        candidates.adjusted(model, priors, -0.1)


def test_tau_is_chosen_for_validation_accuracy_and_matches_the_saved_model_with_flip_tta():
    # A model that favours the common class 0: faces of the rare class 4 sit just below the boundary.
    rng = np.random.default_rng(1)
    labels = np.array([0] * 60 + [4] * 20)
    images = np.where(labels[:, None, None, None] == 0, rng.uniform(0, 120, (80, 8, 8, 1)),
                      rng.uniform(100, 255, (80, 8, 8, 1))).astype(np.float32)
    model = _linear_model([0.0, -5, -5, -5, -2.07, -5])  # class 4: logit about -0.3 on its faces
    model.get_layer("logits").set_weights([np.array([[0, 0, 0, 0, 0.01, 0]], np.float32),
                                           model.get_layer("logits").get_weights()[1]])
    priors = np.array([0.6, 0.05, 0.05, 0.05, 0.2, 0.05])
    tau, rows = candidates.choose_tau(model, images, labels, priors, flip_tta=True)
    assert [r["tau"] for r in rows] == list(candidates.GRID)
    untouched = rows[0]["accuracy"]
    best = max(r["accuracy"] for r in rows)
    assert tau > 0 and best > untouched
    assert rows[[r["tau"] for r in rows].index(tau)]["accuracy"] == best
    assert min(r["tau"] for r in rows if r["accuracy"] == best) == tau  # ties go to the smaller tau
    # the figure choose_tau gives for the chosen tau is what the adjusted model scores, flip TTA included
    saved = candidates.adjusted(model, priors, tau)
    predicted = predict_probabilities(saved, images, flip_tta=True).argmax(1)
    assert np.isclose((predicted == labels).mean(), best)
    chosen = rows[[r["tau"] for r in rows].index(tau)]
    assert np.isclose(chosen["recall"][4], (predicted[labels == 4] == 4).mean())


def test_cli_writes_the_adjusted_model_and_its_report(tmp_path, capsys):
    from fer_keras import evaluate
    from fer_keras.loading import load_classifier
    from fer_keras.models import build_model

    build_model("gimefive", width=1 / 16, input_size=32).save(tmp_path / "m.keras")
    data = ["--image-size", "32", "--synthetic-per-class", "10"]
    out = tmp_path / "a" / "adjusted.keras"
    assert adjust.main(["--model", str(tmp_path / "m.keras"), *data, "--flip-tta", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_suffix(".adjust.json").read_text())
    assert report["tau"] in candidates.GRID and len(report["grid"]) == len(candidates.GRID)
    assert np.isclose(sum(report["priors"].values()), 1.0) and "tau" in printed
    original, saved = load_classifier(tmp_path / "m.keras"), load_classifier(out)
    bias0, bias1 = original.get_layer("logits").get_weights()[1], saved.get_layer("logits").get_weights()[1]
    priors = np.array([report["priors"][c] for c in report["classes"]])
    assert np.allclose(bias1, bias0 - report["tau"] * np.log(priors), atol=1e-6)
    # evaluate on the validation split (flip TTA, as chosen) agrees with the figure the choice was made on
    ev = tmp_path / "ev"
    assert evaluate.main(["--model", str(out), *data, "--split", "val", "--flip-tta", "--out", str(ev)]) == 0
    chosen = next(r for r in report["grid"] if r["tau"] == report["tau"])
    assert np.isclose(json.loads((tmp_path / "ev" / "report.json").read_text())["accuracy"], chosen["accuracy"])
    # a fixed tau
    assert adjust.main(["--model", str(tmp_path / "m.keras"), *data, "--tau", "0.3", "--out", str(out)]) == 0
    assert json.loads(out.with_suffix(".adjust.json").read_text())["tau"] == 0.3


@pytest.mark.parametrize("argv, message", [
    (["--tau", "-1"], "--tau takes a number of 0 or more"),
    (["--tau", "strong"], "--tau takes a number of 0 or more"),
    (["--tau", "inf"], "--tau takes a number of 0 or more"),
    (["--out", "x.h5"], "--out must name a .keras file"),
    (["--model", "nothing-here.keras"], "does not exist"),
    (["--val-fraction", "0"], "the data has no validation split to choose tau on"),
])
def test_cli_bad_input_gets_one_clear_error(tmp_path, capsys, argv, message):
    from fer_keras.models import build_model

    build_model("gimefive", width=1 / 16, input_size=32).save(tmp_path / "m.keras")
    base = {"--model": str(tmp_path / "m.keras"), "--out": str(tmp_path / "o.keras")}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    args = [a for kv in base.items() for a in kv]
    args += ["--image-size", "32", "--synthetic-per-class", "5"]
    assert adjust.main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.keras").exists()


def test_cli_a_corrupt_model_or_an_unwritable_out_gets_one_clear_error(tmp_path, capsys):
    from fer_keras.models import build_model

    data = ["--image-size", "32", "--synthetic-per-class", "10"]
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    assert adjust.main(["--model", str(tmp_path / "broken.keras"), *data, "--out", str(tmp_path / "o.keras")]) == 2
    err = capsys.readouterr().err
    assert "cannot load" in err and "Traceback" not in err
    build_model("gimefive", width=1 / 16, input_size=32).save(tmp_path / "m.keras")
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "o.keras"  # a folder that is a file
    assert adjust.main(["--model", str(tmp_path / "m.keras"), *data, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err
