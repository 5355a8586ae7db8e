"""Searches on the synthetic faces: Hyperband (results, resume, retraining the winner, distributed mode),
Bayesian optimisation and random search."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from fer_keras.config import TrainConfig, apply_hparams
from fer_keras.data.sources import DataConfig
from tuning.hypermodel import FERHyperModel
from tuning.runner import SearchConfig, run_search
from tuning.search import build_parser

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
TINY = DataConfig(image_size=32, synthetic_per_class=15)


def test_best_hparams_round_trip_into_training(tmp_path):
    from fer_keras.training import train

    result = run_search(SearchConfig(data=TINY, max_epochs=2, out_dir=str(tmp_path), project="p"), verbose=0)
    best = json.loads(result.best_path.read_text())["hparams"]
    config = apply_hparams(
        TrainConfig(data=TINY, epochs=1, run_dir=str(tmp_path / "run"), export_base=""), result.best_path
    )
    assert config.model == "convnet" and config.model_options == best["model_options"]
    assert config.learning_rate == best["learning_rate"] and config.batch_size == best["batch_size"]
    run = train(config, verbose=0, progress=False)
    model = keras.saving.load_model(run.run_dir / "best.keras")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == best["model_options"]["blocks"]


def test_an_interrupted_search_continues_and_writes_table_plot_and_best_hparams(tmp_path):
    first = run_search(
        SearchConfig(data=TINY, max_epochs=2, max_trials=1, out_dir=str(tmp_path), project="p"), verbose=0
    )
    assert len(first.rows) == 1
    again = run_search(SearchConfig(data=TINY, max_epochs=2, out_dir=str(tmp_path), project="p"), verbose=0)
    assert len(again.rows) > 1
    assert first.rows[0]["trial_id"] in {r["trial_id"] for r in again.rows}  # the earlier trial is kept
    # The finished search's reports.
    folder = tmp_path / "p"
    assert (folder / "trials.csv").is_file() and (folder / "objective.png").is_file()
    scores = [r["score"] for r in again.rows if r["score"] is not None]
    assert len(scores) >= 2 and scores == sorted(scores, reverse=True)
    best = json.loads(again.best_path.read_text())
    assert best["score"] == scores[0] and best["hparams"]["model"] == "convnet"
    assert "val_accuracy" in again.table_text()


def test_search_space_respects_the_input_size():
    import keras_tuner as kt

    from fer_keras.data.sources import load_data

    data = load_data(DataConfig(image_size=32, synthetic_per_class=3), progress=False)
    hypermodel = FERHyperModel("gimefive", data.splits["train"], data.splits["val"], TrainConfig(data=data_config32()))
    hp = kt.HyperParameters()
    hypermodel.build(hp)
    assert hp._hps["blocks"][0].max_value == 5
    with pytest.raises(ValueError, match="unknown family"):
        FERHyperModel("vit", data.splits["train"], data.splits["val"], TrainConfig())


def data_config32():
    return DataConfig(image_size=32)


@pytest.mark.parametrize("tuner", ["bayesian", "random"])
def test_bayesian_and_random_searches_train_full_trials_within_their_budget(tmp_path, tuner):
    config = SearchConfig(tuner=tuner, data=TINY, max_epochs=1, max_trials=2, out_dir=str(tmp_path), project=tuner)
    result = run_search(config, verbose=0)
    assert len(result.rows) == 2 and all(r["status"] == "COMPLETED" for r in result.rows)
    assert all(r["epochs"] is None for r in result.rows)  # no Hyperband rounds: every trial trains max_epochs
    best = json.loads(result.best_path.read_text())
    assert best["score"] == result.rows[0]["score"] == max(r["score"] for r in result.rows)
    assert (tmp_path / tuner / "objective.png").is_file()
    if tuner == "bayesian":  # continuing works alike for both: checked on one
        again = run_search(SearchConfig(tuner=tuner, data=TINY, max_epochs=1, max_trials=3, out_dir=str(tmp_path),
                                        project=tuner), verbose=0)
        assert len(again.rows) == 3  # continued: the two earlier trials kept, one more run
    with pytest.raises(ValueError, match="needs --max-trials or --time-budget"):
        run_search(SearchConfig(tuner=tuner, data=TINY, out_dir=str(tmp_path), project="unbounded"), verbose=0)


def test_cli_help_documents_every_flag():
    for action in build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.option_strings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_worker_killed_mid_trial_does_not_stop_the_search(tmp_path):
    """A chief and two workers search together; KerasTuner alone waits for ever for a dead worker's trial:
    the chief lets it go after --worker-timeout, the other worker runs the trial, every trial is
    recorded once, and the chief writes the best hyperparameters (one test for both: each starts three
    processes)."""
    import csv
    import time

    port = str(_free_port())
    command = [sys.executable, "-m", "tuning.search", "--max-epochs", "3", "--image-size", "32",
               "--synthetic-per-class", "15", "--out-dir", str(tmp_path), "--project", "dist", "--verbose", "0",
               "--worker-timeout", "30"]
    base = {**os.environ, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": port}
    procs = {name: subprocess.Popen(command, cwd=REPO, env={**base, "KERASTUNER_TUNER_ID": name},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("chief", "tuner0", "tuner1")}
    oracle, killed = tmp_path / "dist" / "oracle.json", None
    outputs = {}
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline:  # tuner0 holds a trial: kill it there
            try:
                killed = json.loads(oracle.read_text()).get("ongoing_trials", {}).get("tuner0")
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        assert killed is not None, "tuner0 never started a trial"
        procs["tuner0"].kill()
        for name in ("chief", "tuner1"):
            outputs[name] = procs[name].communicate(timeout=500)[0]
    finally:
        for proc in procs.values():
            proc.kill()
    for name in ("chief", "tuner1"):
        assert procs[name].returncode == 0, f"{name}:\n{outputs[name][-3000:]}"
    assert f"worker tuner0 silent for over 30 s: its trial {killed}" in outputs["chief"]
    assert "best hyperparameters" in outputs["chief"] and (tmp_path / "dist" / "tuner1.json").is_file()
    with open(tmp_path / "dist" / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == len(set(ids)) and killed in ids
    assert all(r["status"] == "COMPLETED" for r in rows), rows
    best = json.loads((tmp_path / "dist" / "best_hparams.json").read_text())
    assert apply_hparams(TrainConfig(), tmp_path / "dist" / "best_hparams.json").model == best["hparams"]["model"]
