"""Multi-worker training on JAX (fer_keras.multiworker): the cluster from the environment, the watch
that joins and guards the processes (in this process, over 127.0.0.1), and two real processes
training together against one (slow: they start JAX and TensorFlow)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.multiworker import free_port_pair as _free_port
from fer_keras.multiworker import TENSORFLOW_ERROR, Cluster, ClusterError, Watch, cluster_from_env

REPO = Path(__file__).resolve().parents[1]


# -- the cluster from the environment --------------------------------------------------------------

def test_keras_variables_give_the_cluster():
    port = _free_port()
    env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port},127.0.0.1:9",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}
    c = cluster_from_env(env)
    assert (c.num_processes, c.process_id, c.coordinator, c.source) == (2, 1, f"127.0.0.1:{port}",
                                                                       "KERAS_DISTRIBUTION_*")
    assert c.watch_address == ("127.0.0.1", port + 1) and not c.is_chief
    only_coordinator = {**env, "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
                        "KERAS_DISTRIBUTION_NUM_PROCESSES": "3", "KERAS_DISTRIBUTION_PROCESS_ID": "2"}
    assert cluster_from_env(only_coordinator).num_processes == 3


def test_tf_config_gives_the_same_cluster_chief_first():
    config = {"cluster": {"chief": ["c:2000"], "worker": ["w0:2000", "w1:2000"]},
              "task": {"type": "worker", "index": 1}}
    c = cluster_from_env({"TF_CONFIG": json.dumps(config)}, check_ports=False)
    assert c == Cluster(("c:2000", "w0:2000", "w1:2000"), 3, 2, "TF_CONFIG")
    workers_only = {"cluster": {"worker": ["w0:2000", "w1:2000"]}, "task": {"type": "worker", "index": 0}}
    assert cluster_from_env({"TF_CONFIG": json.dumps(workers_only)}, check_ports=False).is_chief


@pytest.mark.parametrize("env, message", [
    ({}, "needs the cluster: the KERAS_DISTRIBUTION_"),
    ({"KERAS_DISTRIBUTION_NUM_PROCESSES": "2"}, "KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_PROCESS_ID "
                                                "unset"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:1", "KERAS_DISTRIBUTION_NUM_PROCESSES": "3",
      "KERAS_DISTRIBUTION_PROCESS_ID": "0"}, "NUM_PROCESSES is 3 but KERAS_DISTRIBUTION_JOB_ADDRESSES lists 2"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:1", "KERAS_DISTRIBUTION_PROCESS_ID": "2"},
     "process 2 is outside a cluster of 2 processes"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:1", "KERAS_DISTRIBUTION_PROCESS_ID": "one"}, "must be a whole number"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a,b:1", "KERAS_DISTRIBUTION_PROCESS_ID": "1"}, "'a' is not host:port"),
    ({"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1", "KERAS_DISTRIBUTION_PROCESS_ID": "0"}, "say how many processes"),
    ({"TF_CONFIG": "{broken"}, "TF_CONFIG is not JSON"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}})},
     "task types ps do not train on JAX"),
])
def test_a_misdescribed_cluster_is_named(env, message):
    with pytest.raises(ClusterError, match=message):
        cluster_from_env(env)


def test_process_0s_ports_must_be_free():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port - 1},127.0.0.1:9",
               "KERAS_DISTRIBUTION_PROCESS_ID": "0"}
        with pytest.raises(ClusterError, match=f"port {port} cannot be listened on"):
            cluster_from_env(env)
        assert cluster_from_env({**env, "KERAS_DISTRIBUTION_PROCESS_ID": "1"}).process_id == 1  # only 0 listens


def test_on_tensorflow_the_command_names_the_jax_path_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import keras

    from fer_keras.train import main as train_main

    assert keras.backend.backend() == "tensorflow"
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["127.0.0.1:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    run = tmp_path / "run"
    assert train_main(["--strategy", "multi-worker", "--epochs", "1", "--run-dir", str(run), "--export-base", ""]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {TENSORFLOW_ERROR}" and "KERAS_BACKEND=jax" in err and "#20585" in err
    assert not run.exists()


# -- the watch, in this process ---------------------------------------------------------------------

class _Lost:
    def __init__(self):
        self.messages, self.event = [], threading.Event()

    def __call__(self, why):
        self.messages.append(why)
        self.event.set()


def _watches(n=2, join_timeout=20.0, silence=30.0):
    port = _free_port()
    addresses = tuple(f"127.0.0.1:{port if i == 0 else 1}" for i in range(n))
    lost = [_Lost() for _ in range(n)]
    watches = [Watch(Cluster(addresses, n, i, "test"), join_timeout, silence, on_lost=lost[i]) for i in range(n)]
    return watches, lost


def _in_threads(watches, fn):
    results = {}

    def run(w):
        try:
            results[w.cluster.process_id] = fn(w)
        except ClusterError as err:
            results[w.cluster.process_id] = err

    threads = [threading.Thread(target=run, args=(w,)) for w in watches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _meet_all(watches) -> dict:
    """The errors of the processes that failed to meet, by process id."""
    return {i: str(r) for i, r in _in_threads(watches, lambda w: w.meet()).items() if r is not None}


def test_three_processes_meet_agree_and_part_without_alarm():
    watches, lost = _watches(3)
    assert _meet_all(watches) == {}
    assert _in_threads(watches, lambda w: w.agree("the data", {"train": 10})) == {0: None, 1: None, 2: None}
    for w in watches:
        w._finished = True  # finish() without JAX: say goodbye
        for peer in w._peers.values():
            w._tell(peer, {"op": "bye"})
            peer.sock.close()
    time.sleep(0.5)
    assert all(not x.messages for x in lost)


def test_processes_that_disagree_all_stop_with_the_same_named_values():
    watches, _ = _watches(2)
    assert _meet_all(watches) == {}
    results = _in_threads(watches, lambda w: w.agree("the run", {"epochs done": w.cluster.process_id * 3},
                                                     "use shared storage"))
    messages = {str(r) for r in results.values()}
    assert all(isinstance(r, ClusterError) for r in results.values()) and len(messages) == 1
    (message,) = messages
    assert "disagree on the run" in message and 'process 1: {"epochs done": 3}' in message
    assert message.endswith("use shared storage")


def test_a_process_that_never_comes_is_named_within_the_bound():
    watches, _ = _watches(3, join_timeout=1.0)
    began = time.monotonic()
    errors = _meet_all(watches[:2])  # process 2 never starts
    assert time.monotonic() - began < 10
    assert errors[0].startswith("multi-worker: process 2 never joined process 0 at 127.0.0.1:")
    assert errors[1] == errors[0]  # the one that came is told why it stops


def test_a_process_that_cannot_reach_process_0_says_so():
    watches, _ = _watches(2, join_timeout=1.0)
    errors = _meet_all(watches[1:])
    assert errors[1].startswith("multi-worker: process 1 could not join process 0 at 127.0.0.1:")


def test_a_process_that_dies_stops_every_other_naming_it():
    watches, lost = _watches(3)
    assert _meet_all(watches) == {}
    watches[1]._peers[0].sock.shutdown(socket.SHUT_RDWR)  # process 1 dies: its connection closes
    assert lost[0].event.wait(10)
    assert lost[0].messages[0].startswith("multi-worker: process 1 closed its connection before the run finished")
    assert "--resume" in lost[0].messages[0]
    # Process 0 tells the others why before it stops (here the hook records instead of exiting).
    assert lost[2].event.wait(10) and lost[2].messages == lost[0].messages


def test_a_silent_process_is_named_after_the_bound():
    watches, lost = _watches(2, silence=1.0)
    assert _meet_all(watches) == {}
    watches[1]._finished = True  # its beats stop, its connection stays open: a hung process
    began = time.monotonic()
    assert lost[0].event.wait(10) and time.monotonic() - began < 5
    assert lost[0].messages[0].startswith("multi-worker: process 1 sent nothing for 1 s (FER_KERAS_WORKER_TIMEOUT)")


def test_an_unreadable_message_stops_the_others_naming_its_sender():
    watches, lost = _watches(2)
    assert _meet_all(watches) == {}
    watches[1]._peers[0].sock.sendall(b'{"op": "agree"}\n')  # no what, no value: another version's message
    assert lost[0].event.wait(10)
    assert lost[0].messages[0].startswith("multi-worker: process 1 sent a message this process cannot read "
                                          "(a agree message without what, value")


def test_an_agreement_a_process_never_reaches_is_named_within_the_bound():
    watches, _ = _watches(3, join_timeout=2.0)
    assert _meet_all(watches) == {}
    began = time.monotonic()
    results = _in_threads(watches[:2], lambda w: w.agree("the data", {"train": 10}))  # process 2 is stuck
    assert time.monotonic() - began < 10
    assert str(results[0]).startswith("multi-worker: process 2 did not reach the data within 2 s of process 0")
    assert str(results[1]) == str(results[0])  # process 0 tells the others why


def test_a_failure_during_an_agreement_ends_the_wait_with_its_reason():
    watches, lost = _watches(2, join_timeout=30.0)
    assert _meet_all(watches) == {}
    threading.Timer(0.5, lambda: watches[1].abort("multi-worker: process 1 ran out of disk")).start()
    began = time.monotonic()
    with pytest.raises(ClusterError, match="process 1 ran out of disk"):
        watches[0].agree("the end of training", 3)
    assert time.monotonic() - began < 10
    assert lost[0].event.wait(10) and "process 1 ran out of disk" in lost[0].messages[0]  # and it stops


# -- two real processes ---------------------------------------------------------------------------

COMMON = ["--width", "0.0625", "--image-size", "32", "--synthetic-per-class", "200", "--batch-size", "32",
          "--optimizer", "adam", "--lr", "0.003", "--augment", "none", "--verbose", "2", "--export-base", ""]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KERAS_DISTRIBUTION_", "TF_CONFIG"))}
    # XLA's backend optimisations off: the tiny model compiles in much less time, and the pair and the
    # single run compile alike, so they still compute the same.
    return {**env, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), "XLA_FLAGS": "--xla_backend_optimization_level=0",
            **extra}


def _start_pair(run: Path, epochs: int, *extra: str) -> list[subprocess.Popen]:
    port = _free_port()
    procs = []
    for i in range(2):
        env = _env(KERAS_DISTRIBUTION_JOB_ADDRESSES=f"127.0.0.1:{port},127.0.0.1:1",
                   KERAS_DISTRIBUTION_NUM_PROCESSES="2", KERAS_DISTRIBUTION_PROCESS_ID=str(i),
                   FER_KERAS_CLUSTER_TIMEOUT="120")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "fer_keras.train", "--strategy", "multi-worker", *COMMON, "--epochs", str(epochs),
             "--run-dir", str(run), *extra], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    return procs


def _digest(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if "ends with weights" in line]
    assert len(lines) == 1, stdout[-2000:]
    return lines[0].split("ends with weights ")[1].split()[0]


def _first_epoch_loss(stdout: str) -> float:
    line = next(line for line in stdout.splitlines() if " - loss: " in line)
    return float(line.split(" - loss: ")[1].split()[0])


jax_needed = pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None,
                                reason="JAX is not installed (it is in the test extra: pip install -e .[test])")


@pytest.mark.slow
@jax_needed
def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    """Both exit 0 with identical weights; only process 0 evaluates and writes; and the pair learns
    what one process learns with the same global batch of 32 and seed, since every process draws the
    same global batches and trains on its half of each. Only the order of floating-point sums
    differs (gradients summed per process, then across), so the runs drift apart slowly: two epochs
    here, where the pair's and the single run's predictions agreed on 99 % of the test faces (after
    a third epoch, 79 %, with test accuracy still within one face)."""
    pair = _start_pair(tmp_path / "pair", 2, "--flip-tta", "off")
    # One process: the same command as on TensorFlow, on JAX (it says how to export: SavedModels need TensorFlow).
    single = subprocess.run([sys.executable, "-m", "fer_keras.train", *COMMON, "--epochs", "2", "--flip-tta", "off",
                             "--run-dir", str(tmp_path / "single"), "--export-base", str(tmp_path / "models")],
                            env=_env(), cwd=REPO, capture_output=True, text=True, timeout=600)
    outs = [p.communicate(timeout=600) for p in pair]
    assert [p.returncode for p in pair] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert single.returncode == 0, single.stderr[-3000:]
    assert "not exported: a SavedModel needs KERAS_BACKEND=tensorflow (this run used jax)" in single.stdout
    assert _digest(outs[0][0]) == _digest(outs[1][0])
    assert "test accuracy" in outs[0][0] and "test accuracy" not in outs[1][0]
    runs = {name: tmp_path / name for name in ("pair", "single")}
    metrics = {name: json.loads((run / "metrics.json").read_text()) for name, run in runs.items()}
    histories = {name: json.loads((run / "state.json").read_text())["history"] for name, run in runs.items()}
    assert metrics["pair"]["n"] == metrics["single"]["n"] == 180  # 15 % of 1,200 faces
    assert abs(metrics["pair"]["accuracy"] - metrics["single"]["accuracy"]) <= 0.02
    assert metrics["single"]["accuracy"] > 0.2  # it learned something (chance: 1/6)
    assert abs(histories["pair"][0]["loss"] - histories["single"][0]["loss"]) < 1e-3
    assert all(abs(a["loss"] - b["loss"]) < 0.01 for a, b in zip(histories["pair"], histories["single"]))
    # The saved models, loaded here (TensorFlow backend), predict the same emotion for nearly every face.
    import keras

    from fer_keras.data.sources import DataConfig, load_data
    from fer_keras.loading import as_float32

    faces = load_data(DataConfig(image_size=32, synthetic_per_class=200), progress=False).splits["test"]
    predicted = [as_float32(keras.saving.load_model(run / "best.keras", compile=False)).predict(
        faces.images, verbose=0)["probabilities"].argmax(1) for run in runs.values()]
    assert (predicted[0] == predicted[1]).mean() >= 0.95
    # The JAX-trained model exports with `python -m fer_keras.export` on TensorFlow (this process's backend).
    from fer_keras.export import main as export_main

    assert export_main([str(runs["single"] / "best.keras"), "--base", str(tmp_path / "models")]) == 0
    assert (tmp_path / "models" / "gimefive" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow
@jax_needed
def test_a_killed_worker_stops_process_0_with_one_error_and_the_job_resumes(tmp_path):
    run = tmp_path / "run"
    # Augmented as a user would train (Keras layers and the NumPy robust feed, per process).
    augmented = ("--synthetic-per-class", "60", "--augment", "flip,rotate,robust")
    pair = _start_pair(run, 3, *augmented)
    deadline = time.monotonic() + 300
    while not (run / "state.json").is_file():  # process 0 has written epoch 1's checkpoint
        assert time.monotonic() < deadline and all(p.poll() is None for p in pair), pair[0].stderr.read()[-3000:]
        time.sleep(0.1)
    pair[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    out, err = pair[0].communicate(timeout=120)
    pair[1].communicate(timeout=30)
    assert pair[0].returncode == 1 and time.monotonic() - killed < 30
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    assert errors[0].startswith("error: multi-worker: process 1 closed its connection"), err[-3000:]
    assert "Traceback" not in err and "Check failure" not in err
    done = json.loads((run / "state.json").read_text())["epochs_done"]
    assert 1 <= done < 3
    resumed = _start_pair(run, 3, *augmented, "--resume")
    outs = [p.communicate(timeout=600) for p in resumed]
    assert [p.returncode for p in resumed] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert f"resuming {run} after epoch {done}" in outs[1][0]
    assert _digest(outs[0][0]) == _digest(outs[1][0])
    assert json.loads((run / "state.json").read_text())["epochs_done"] == 3 and (run / "metrics.json").is_file()


def test_the_benchmark_reads_keras_step_times():
    from benchmarks.multiworker import step_seconds

    log = ("Epoch 1/3\n20/20 - 31s - 2s/step - loss: 1.9\nEpoch 2/3\n20/20 - 3s - 151ms/step - loss: 1.8\n"
           "Epoch 3/3\n20/20 - 0s - 950us/step - loss: 1.7 - val_loss: 1.6\n")
    assert step_seconds(log) == pytest.approx([31 / 20, 0.151, 0.00095])
