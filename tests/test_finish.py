"""fer_keras.finish: a run's final model chosen on validation by the fixed rule of fer_keras.candidates."""

import json
import shlex

import keras
import numpy as np
import pytest

from fer_keras import candidates, evaluate, finish
from fer_keras.models import build_model

DATA = ["--data", "synthetic", "--image-size", "32", "--synthetic-per-class", "10"]


def _row(name, kind, accuracy, tau=None):
    return {"name": name, "kind": kind, "accuracy": accuracy, **({} if tau is None else {"tau": tau})}


def test_the_rule_wants_a_soup_clear_of_the_margin_and_an_adjustment_with_tau():
    rows = [_row("best", "checkpoint", 0.8600), _row("soup", "soup", 0.8609),
            _row("best adjusted", "adjusted checkpoint", 0.8605, 0.05),
            _row("soup adjusted", "adjusted soup", 0.8608, 0.1)]
    chosen = candidates.choose_candidate(rows)
    assert chosen["name"] == "best adjusted"  # both soups are within 0.1 point of the checkpoint
    assert [r["counted"] for r in rows] == [True, False, True, False]
    assert "under the checkpoint + 0.10 points" in rows[1]["why"]
    rows[1]["accuracy"] = 0.8611
    assert candidates.choose_candidate(rows)["name"] == "soup"
    assert "why" not in rows[1]  # a row's verdict is its latest
    # tau 0 is the model itself, so it never competes; a tie goes to the simpler (earlier) row
    rows = [_row("best", "checkpoint", 0.86), _row("best adjusted", "adjusted checkpoint", 0.87, 0.0),
            _row("soup", "soup", 0.87), _row("soup adjusted", "adjusted soup", 0.87, 0.05)]
    assert candidates.choose_candidate(rows)["name"] == "soup"
    assert rows[1]["why"].startswith("tau 0")
    assert candidates.choose_candidate(rows, soup_margin=0.02)["name"] == "best"
    with pytest.raises(ValueError, match="no checkpoint"):
        candidates.choose_candidate([_row("soup", "soup", 0.9)])


def _model(seed):
    keras.utils.set_random_seed(seed)
    return build_model("gimefive", width=1 / 16, input_size=32)


def _run(tmp_path):
    """A run folder as fer_keras.train leaves it: best.keras is epoch 2, whose checkpoint is kept too."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    best = _model(0)
    best.save(run / "best.keras")
    best.save(run / "checkpoints" / "epoch-0002.keras")
    for epoch, seed in ((3, 1), (4, 2)):
        _model(seed).save(run / "checkpoints" / f"epoch-{epoch:04d}.keras")
    (run / "state.json").write_text(json.dumps({"epochs_done": 4, "best_epoch": 2, "best": 0.5}))
    return run


def test_finish_chooses_on_validation_and_its_figures_are_what_evaluate_measures(tmp_path, capsys):
    run = _run(tmp_path)
    assert finish.main(["--run-dir", str(run), *DATA, "--flip-tta", "--shifted-copy"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "finish" / "candidate.finish.json").read_text())
    # the best epoch's own checkpoint is not averaged in twice
    assert [r["model"] for r in report["soup"]].count("best.keras") == 1
    assert "checkpoints/epoch-0002.keras" not in {r["model"] for r in report["soup"]}
    kinds = [r["kind"] for r in report["candidates"]]
    assert kinds[0] == "checkpoint" and "adjusted checkpoint" in kinds
    chosen = next(r for r in report["candidates"] if r["name"] == report["chosen"])
    assert chosen["counted"] and all(chosen["accuracy"] >= r["accuracy"] for r in report["candidates"] if r["counted"])
    assert f"{report['chosen']}" in out and "<- chosen" in out
    # the printed test command runs as printed, and evaluate agrees with the figures the choice was made on
    command = shlex.split(out.rsplit("the test split, once: ", 1)[1].strip())
    assert command[:3] == ["python", "-m", "fer_keras.evaluate"]
    assert ("--flip-tta" in command) == report["serve_flip_tta"]
    assert evaluate.main(command[3:]) == 0
    assert (run / "finish" / "test" / "report.json").is_file()
    val = run / "finish" / "val"
    model = str(run / "finish" / "candidate.keras")
    assert evaluate.main(["--model", model, *DATA, "--split", "val", "--shifted-copy", "--flip-tta",
                          "--out", str(val)]) == 0
    measured = json.loads((val / "report.json").read_text())["accuracy"]
    assert np.isclose(measured, chosen["accuracy"]) and np.isclose(measured, report["val_accuracy_flip_tta"])


@pytest.mark.parametrize("case, message", [
    ("not a run", "holds no best.keras"),
    ("broken state", "state.json cannot be read"),
    ("margin", "--soup-margin takes validation points"),
    ("other architecture", "does not have the architecture"),
    ("corrupt checkpoint", "epoch-0003.keras"),
])
def test_bad_input_gets_one_clear_error_and_writes_nothing(tmp_path, capsys, case, message):
    run = _run(tmp_path)
    argv = ["--run-dir", str(run), *DATA]
    if case == "not a run":
        argv[1] = str(tmp_path)
    elif case == "broken state":
        (run / "state.json").write_text("{not json")
    elif case == "margin":
        argv += ["--soup-margin", "-1"]
    elif case == "corrupt checkpoint":
        (run / "checkpoints" / "epoch-0003.keras").write_bytes(b"not a zip archive")
    else:
        build_model("gimefive", width=1 / 8, input_size=32).save(run / "checkpoints" / "epoch-0005.keras")
    assert finish.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (run / "finish").exists()
