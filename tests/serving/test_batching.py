import threading

import numpy as np
import pytest

from serving.config import read_batching_parameters
from serving.local.batching import Batcher, BatchingOptions
from tests.serving.test_deploy_files import SERVING


def test_concurrent_calls_run_as_one_batch_and_get_their_own_rows():
    calls = []

    def double(x):
        calls.append(int(x.shape[0]))
        return {"y": x * 2}

    batcher = Batcher(double, BatchingOptions(max_batch_size=64, batch_timeout_micros=200_000, num_batch_threads=1))
    results = {}

    def call(i):
        results[i] = batcher({"x": np.full((2, 3), i, np.float32)})["y"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.stop()
    assert sum(calls) == 12 and len(calls) < 6
    for i in range(6):
        np.testing.assert_array_equal(results[i], np.full((2, 3), 2 * i))


def test_errors_reach_every_caller_of_the_batch():
    def broken(x):
        raise ValueError("bad batch")

    batcher = Batcher(broken, BatchingOptions(batch_timeout_micros=1000, num_batch_threads=1))
    with pytest.raises(ValueError, match="bad batch"):
        batcher({"x": np.zeros((1, 2), np.float32)})
    batcher.stop()


def test_a_stopped_batcher_answers_what_was_queued_and_then_calls_alone():
    """Stopping (its version unloaded) ends the batch threads, which hold the model, once every queued
    call is answered; a call that arrives later (it resolved the version just before) runs alone."""
    import time

    release, running = threading.Event(), []

    def slow(x):
        running.append(int(x.shape[0]))
        release.wait(10)
        return {"y": x + 1}

    # Batches of at most 2 rows: of three 1-row calls, at least one waits in the queue behind the first batch.
    batcher = Batcher(slow, BatchingOptions(max_batch_size=2, batch_timeout_micros=1000, num_batch_threads=1))
    results = []

    def call(rows):
        results.append(batcher({"x": np.zeros((rows, 2), np.float32)})["y"])

    callers = [threading.Thread(target=call, args=(1,), daemon=True) for _ in range(3)]
    for t in callers:
        t.start()
    deadline = time.monotonic() + 10
    while sum(running) + batcher._queue.qsize() < 3:  # one batch running, the rest queued behind it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert batcher._queue.qsize() >= 1
    batcher.stop()
    release.set()
    for t in callers:
        t.join(10)
    assert len(results) == 3 and all((r == 1).all() for r in results)
    for t in batcher._threads:
        t.join(5)
    assert not any(t.is_alive() for t in batcher._threads)
    late = threading.Thread(target=call, args=(1,), daemon=True)
    late.start()
    late.join(10)
    assert len(results) == 4 and (results[-1] == 1).all()


def test_options_from_the_shipped_batching_file():
    options = BatchingOptions.from_parameters(read_batching_parameters(SERVING / "batching.config"))
    assert options == BatchingOptions(max_batch_size=64, batch_timeout_micros=3000, num_batch_threads=2)
