"""Bad TF_CONFIG for --strategy multi-worker: one clear error each, before TensorFlow starts a cluster,
and nothing written (no run folder)."""

import json
import socket

import pytest

from fer_keras.train import main as train_main
from fer_keras.training import RunDirError, check_tf_config

pytestmark = pytest.mark.reliability


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(index=0, workers=None) -> str:
    workers = workers or [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


@pytest.mark.parametrize("text, message", [
    (None, "needs the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not JSON"),
    ('["worker"]', "cluster must map task types to lists of host:port"),
    ('{"cluster": {"worker": "127.0.0.1:2222"}, "task": {"type": "worker", "index": 0}}', "lists of host:port"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', "lists of host:port"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "chief", "index": 0}}', "must name a type"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}}', "must name a type"),
])
def test_malformed_tf_config_is_named(text, message):
    with pytest.raises(RunDirError, match=message):
        check_tf_config(text)


def test_an_index_outside_the_cluster_is_named():
    with pytest.raises(RunDirError, match="task index 2 is outside its 2 worker addresses"):
        check_tf_config(_config(index=2))
    assert check_tf_config(_config(index=1))["task"]["index"] == 1


def test_a_port_in_use_is_named():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RunDirError, match=f"port {port} cannot be listened on.*another run"):
            check_tf_config(_config(workers=[f"127.0.0.1:{port}", f"127.0.0.1:{_free_port()}"]))


def test_the_command_stops_with_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", "{broken")
    run = tmp_path / "run"
    assert train_main(["--strategy", "multi-worker", "--epochs", "1", "--run-dir", str(run), "--export-base", ""]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TF_CONFIG is not JSON") and "Traceback" not in err
    assert not run.exists()


@pytest.mark.slow
def test_an_unreachable_worker_stops_the_run_after_the_stated_wait(tmp_path):
    """TensorFlow waits for ever (and ignores SIGTERM) when a worker of TF_CONFIG never answers; the
    run says whom it waits for and stops with status 1 after FER_KERAS_CLUSTER_TIMEOUT seconds."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {**os.environ, "TF_CONFIG": _config(workers=[f"127.0.0.1:{_free_port()}", "127.0.0.1:1"]),
           "FER_KERAS_CLUSTER_TIMEOUT": "10"}
    run = tmp_path / "run"
    began = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "fer_keras.train", "--strategy", "multi-worker", "--epochs", "1",
                          "--run-dir", str(run), "--export-base", ""], env=env, capture_output=True, text=True,
                         timeout=240, cwd=Path(__file__).resolve().parents[2], check=False)
    assert out.returncode == 1 and time.monotonic() - began < 200
    assert "forming the cluster: waiting for 127.0.0.1:1 (at most 10 s" in out.stderr
    assert "Timeout (0:00:10)!" in out.stderr and not run.exists()
