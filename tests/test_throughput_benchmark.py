"""benchmarks.throughput's own logic: which environment each implementation's process gets, and the rounds."""

import json
import subprocess


def test_keras_eigen_turns_onednn_off_and_rounds_print_each_round(monkeypatch, capsys):
    from benchmarks import throughput

    seen = []

    def fake_run(cmd, capture_output, text, env):
        framework = cmd[cmd.index("--child") + 1]
        seen.append((framework, env.get("TF_ENABLE_ONEDNN_OPTS")))
        figures = {"train_images_per_s": 10.0 * len(seen), "inference_images_per_s": 100.0,
                   "onednn": env.get("TF_ENABLE_ONEDNN_OPTS") != "0"}
        return subprocess.CompletedProcess(cmd, 0, stdout="RESULT " + json.dumps(figures), stderr="")

    monkeypatch.setattr(throughput.subprocess, "run", fake_run)
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "1")
    assert throughput.main(["--frameworks", "keras,keras-eigen", "--rounds", "2"]) == 0
    assert seen == [("keras", "1"), ("keras-eigen", "0"), ("keras", "1"), ("keras-eigen", "0")]
    said = capsys.readouterr().out
    for row in ("| keras | 1 | 10.0 (-) | 100.0 (-) | on |", "| keras-eigen | 1 | 20.0 (-) | 100.0 (-) | off |",
                "| keras | 2 | 30.0 (-) | 100.0 (-) | on |", "| keras-eigen | 2 | 40.0 (-) | 100.0 (-) | off |"):
        assert row in said


def test_each_figure_is_the_median_step_with_the_slowest_and_fastest_beside_it(monkeypatch):
    from benchmarks import throughput

    clock = iter([0.0, 1.0, 1.0, 3.0, 3.0, 3.5, 3.5, 4.5, 4.5, 9.5])  # steps of 1, 2, 0.5, 1 and 5 s
    monkeypatch.setattr(throughput.time, "perf_counter", lambda: next(clock))
    calls = []
    seconds = throughput.timed(lambda: calls.append(1), 5)
    assert seconds == [1.0, 2.0, 0.5, 1.0, 5.0] and len(calls) == 5
    assert throughput.rate(64, seconds) == {"median": 64.0, "slowest": 12.8, "fastest": 128.0}  # one slow step
    # does not move the median, as it moved a timed fit over all five steps (64 * 5 / 9.5 = 33.7 images/s)


def test_onednn_says_what_tensorflow_runs_and_none_where_it_cannot_tell(monkeypatch):
    import types

    from tensorflow.python import util

    from benchmarks import throughput
    assert throughput.onednn_enabled() in (True, False)
    monkeypatch.setattr(util, "_pywrap_util_port", types.SimpleNamespace(), raising=False)
    assert throughput.onednn_enabled() is None


def test_a_repeated_or_unknown_framework_is_refused_before_anything_runs(monkeypatch, capsys):
    import pytest

    from benchmarks import throughput

    monkeypatch.setattr(throughput.subprocess, "run", lambda *a, **k: pytest.fail("nothing may run"))
    for listed, said in (("keras,keras-bf16,keras", "names keras more than once"), ("keras,kears", "unknown ['kears']"),
                         (",", "empty list")):
        with pytest.raises(SystemExit) as stop:
            throughput.main(["--frameworks", listed])
        assert stop.value.code == 2 and said in capsys.readouterr().err
    with pytest.raises(SystemExit):
        throughput.main(["--frameworks", "keras", "--rounds", "0"])
    assert "--rounds must be at least 1" in capsys.readouterr().err
