"""fer_keras.average: weight averaging of checkpoints, uniform or a greedy soup chosen on validation."""

import json

import keras
import numpy as np
import pytest

from fer_keras import average, candidates
from fer_keras.models import build_model

DATA = ["--data", "synthetic", "--image-size", "32", "--synthetic-per-class", "10"]


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_model("gimefive", width=1 / 16, input_size=32)


def test_the_average_holds_the_mean_of_every_weight_and_leaves_the_models_alone():
    a, b, c = _model(0), _model(1), _model(2)
    before = [w.copy() for w in a.get_weights()]
    mean = candidates.average_weights([a, b, c])
    for got, *each in zip(mean.get_weights(), a.get_weights(), b.get_weights(), c.get_weights()):
        assert np.allclose(got, np.mean(each, axis=0), atol=1e-6)
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), before))
    # the BatchNorm statistics are averaged too (they differ between models once set)
    bn = next(layer for layer in a.layers if isinstance(layer, keras.layers.BatchNormalization))
    for i, m in enumerate((a, b)):
        layer = m.get_layer(bn.name)
        gamma, beta, moving_mean, moving_var = layer.get_weights()
        layer.set_weights([gamma, beta, moving_mean + i, moving_var])
    assert np.allclose(candidates.average_weights([a, b]).get_layer(bn.name).get_weights()[2],
                       a.get_layer(bn.name).get_weights()[2] + 0.5, atol=1e-6)
    faces = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 1)).astype(np.float32)
    assert candidates.average_weights([a]).predict(faces, verbose=0)["probabilities"].shape == (4, 6)


def test_models_of_another_architecture_are_refused_by_name():
    other = build_model("gimefive", width=1 / 8, input_size=32)
    with pytest.raises(ValueError, match="wide.keras does not have the architecture of small.keras"):
        candidates.average_weights([_model(0), other], ["small.keras", "wide.keras"])
    with pytest.raises(ValueError, match="no models"):
        candidates.average_weights([])


def test_the_greedy_soup_adds_a_model_only_where_validation_does_not_drop():
    models = [_model(s) for s in range(4)]
    names = ["m0", "m1", "m2", "m3"]
    # a stand-in score: closeness of the first weight to a target that models 1 and 3 sit near
    target = (models[1].get_weights()[0] + models[3].get_weights()[0]) / 2

    def score(model):
        return -float(np.abs(model.get_weights()[0] - target).mean())

    soup, rows = candidates.greedy_soup(models, names, score)
    assert [r["model"] for r in rows][0] in ("m1", "m3")  # the best alone goes first
    joined = {r["model"] for r in rows if r["joined"]}
    assert joined == {"m1", "m3"}
    assert np.allclose(soup.get_weights()[0], target, atol=1e-6)
    soups = [r["soup"] for r in rows if r["joined"]]
    assert soups == sorted(soups)  # validation never dropped as models joined


def test_cli_greedy_soup_on_validation_agrees_with_evaluate(tmp_path, capsys):
    from fer_keras import evaluate

    paths = []
    for s in range(3):
        paths.append(str(tmp_path / f"epoch-{s}.keras"))
        _model(s).save(paths[-1])
    out = tmp_path / "soup" / "soup.keras"
    assert average.main(["--models", *paths, *DATA, "--flip-tta", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".average.json").read_text())
    assert report["greedy"] and report["members"] and set(report["members"]) <= set(paths)
    assert "validation" in capsys.readouterr().out
    ev = tmp_path / "ev"
    assert evaluate.main(["--model", str(out), *DATA, "--split", "val", "--flip-tta", "--out", str(ev)]) == 0
    last_joined = [r for r in report["validation"] if r["joined"]][-1]
    assert np.isclose(json.loads((ev / "report.json").read_text())["accuracy"], last_joined["soup"])
    # --no-greedy without data: every model, no validation read
    assert average.main(["--models", *paths, "--no-greedy", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".average.json").read_text())
    assert report["members"] == paths and report["validation"] == []
    from fer_keras.loading import load_classifier

    models = [load_classifier(p) for p in paths]
    assert np.allclose(load_classifier(out).get_weights()[0], np.mean([m.get_weights()[0] for m in models], 0),
                       atol=1e-6)


@pytest.mark.parametrize("case, message", [
    ("one", "two or more checkpoints"),
    ("suffix", "--out must name a .keras file"),
    ("missing", "does not exist"),
    ("architecture", "does not have the architecture"),
    ("greedy without data", "give --data"),
    ("no validation split", "the data has no validation split to score the checkpoints on"),
])
def test_cli_bad_input_gets_one_clear_error(tmp_path, capsys, case, message):
    a, b = str(tmp_path / "a.keras"), str(tmp_path / "b.keras")
    _model(0).save(a)
    (build_model("gimefive", width=1 / 8, input_size=32) if case == "architecture" else _model(1)).save(b)
    out = str(tmp_path / "o.keras")
    argv = {"one": ["--models", a, "--no-greedy", "--out", out],
            "suffix": ["--models", a, b, "--no-greedy", "--out", str(tmp_path / "o.h5")],
            "missing": ["--models", a, str(tmp_path / "none.keras"), "--no-greedy", "--out", out],
            "architecture": ["--models", a, b, *DATA, "--out", out],
            "greedy without data": ["--models", a, b, "--greedy", "--out", out],
            "no validation split": ["--models", a, b, "--data", "synthetic", "--image-size", "32",
                                    "--synthetic-per-class", "5", "--val-fraction", "0", "--out", out]}[case]
    assert average.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.keras").exists()
