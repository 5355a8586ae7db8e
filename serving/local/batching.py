"""Server-side batching: concurrent Predict calls on one signature run as one batch.

Like TF Serving's ``--enable_batching``: requests wait up to
``batch_timeout_micros`` for others, up to ``max_batch_size`` rows are
concatenated along the first axis, run once by one of ``num_batch_threads``
threads, and each caller gets its own rows back.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import tensorflow as tf


@dataclass(frozen=True)
class BatchingOptions:
    max_batch_size: int = 64
    batch_timeout_micros: int = 3000
    num_batch_threads: int = 2

    @staticmethod
    def from_parameters(params) -> "BatchingOptions":
        """From a parsed batching parameters file (``serving.config.read_batching_parameters``)."""
        d = BatchingOptions()
        return BatchingOptions(
            max_batch_size=params.max_batch_size.value or d.max_batch_size,
            batch_timeout_micros=params.batch_timeout_micros.value or d.batch_timeout_micros,
            num_batch_threads=params.num_batch_threads.value or d.num_batch_threads,
        )


class Batcher:
    """Batches calls of one concrete function whose inputs and outputs all share a leading batch axis."""

    def __init__(self, function, options: BatchingOptions):
        self.function = function
        self.options = options
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._stop_lock = threading.Lock()  # no call is queued once stop() has begun
        self._threads = [threading.Thread(target=self._loop, daemon=True, name=f"batch-{i}")
                         for i in range(options.num_batch_threads)]
        for t in self._threads:
            t.start()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = next(iter(inputs.values())).shape[0]
        if rows >= self.options.max_batch_size:  # already full batches: run them max_batch_size rows at a time
            size = self.options.max_batch_size
            parts = [{k: np.asarray(v) for k, v in self.function(
                **{k: tf.constant(v[i:i + size]) for k, v in inputs.items()}).items()} for i in range(0, rows, size)]
            return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        future: Future = Future()
        with self._stop_lock:
            stopped = self._stop.is_set()
            if not stopped:
                self._queue.put((inputs, rows, future))
        if stopped:  # a call that resolved this version just before it was unloaded: run it alone
            self._run([(inputs, rows, future)])
        return future.result()

    def _loop(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):  # once stopped, what was queued is still run
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch, rows = [first], first[1]
            deadline = time.monotonic() + self.options.batch_timeout_micros / 1e6
            while rows < self.options.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if rows + item[1] > self.options.max_batch_size or not _compatible(first[0], item[0]):
                    self._queue.put(item)  # next batch
                    break
                batch.append(item)
                rows += item[1]
            self._run(batch)

    def _run(self, batch) -> None:
        try:
            names = list(batch[0][0])
            joined = {n: tf.constant(np.concatenate([inputs[n] for inputs, _, _ in batch])) for n in names}
            outputs = {k: np.asarray(v) for k, v in self.function(**joined).items()}
            start = 0
            for _, rows, future in batch:
                future.set_result({k: v[start:start + rows] for k, v in outputs.items()})
                start += rows
        except Exception as err:  # every caller of the batch gets the error
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(err)

    def stop(self) -> None:
        """Ends the batch threads once the calls already queued are answered (they let go of the model)."""
        with self._stop_lock:
            self._stop.set()


def _compatible(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(a[k].shape[1:] == b[k].shape[1:] and a[k].dtype == b[k].dtype for k in a)


def batchable(signature) -> bool:
    """True when every input and output of a SignatureDef has an unknown leading (batch) dimension."""
    tensors = list(signature.inputs.values()) + list(signature.outputs.values())
    return bool(signature.inputs) and all(
        not t.tensor_shape.unknown_rank and t.tensor_shape.dim and t.tensor_shape.dim[0].size == -1 for t in tensors)
