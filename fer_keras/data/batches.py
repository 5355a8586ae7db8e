"""Training batches from faces held as NumPy arrays, for any Keras 3 backend.

``fer_keras.data.pipeline`` feeds ``fer_keras.train`` through tf.data. A machine
without TensorFlow (the lent accelerators run Keras on JAX) trains from packed
arrays instead; :class:`FaceBatches` is that feed: reshuffled every epoch
(seeded by the epoch, so a run is repeatable), with the ``robust`` augmentation
(``fer_keras.data.robust.robust_augment``, NumPy and OpenCV, vectorised over
the batch) on worker threads. The Keras augmentation layers stay inside the trained model.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor

import keras
import numpy as np

from fer_keras.data.robust import robust_augment


class FaceBatches(keras.utils.PyDataset):
    """``(faces float32 [B, S, S, 1] in 0..255, {"logits": y, "probabilities": y})`` batches.

    With the robust augmentation on, each epoch's faces are augmented in chunks
    of about ``CHUNK_FACES`` (whole batches), all submitted to ``workers``
    threads when the epoch's first batch is asked for, so the threads run ahead
    of training: the vectorised augmentation costs far less per face on a
    chunk than on one batch of 64, and NumPy and OpenCV release the
    interpreter while they work.

    Args:
        images: ``[N, S, S, 1]`` faces, 0..255 (any real dtype).
        targets: ``[N, K]`` one-hot or soft targets.
        batch_size: faces per batch (the last batch may be smaller).
        robust: strength of the robust augmentation (0: off).
        seed: seed of the shuffling and of the augmentation.
        workers: threads preparing augmented chunks.
    """

    CHUNK_FACES = 512

    def __init__(self, images: np.ndarray, targets: np.ndarray, batch_size: int, *, robust: float = 0.0,
                 seed: int = 0, workers: int = 1):
        super().__init__(workers=1, use_multiprocessing=False, max_queue_size=8)
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} faces but {len(targets)} targets")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1; got {batch_size}")
        self.images, self.targets = images, np.asarray(targets, np.float32)
        self.batch_size, self.robust, self.seed = int(batch_size), float(robust), int(seed)
        self.chunk_batches = max(1, self.CHUNK_FACES // self.batch_size)
        self.threads = max(1, int(workers))
        self.epoch = 0
        self._order = self._shuffled(0)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._chunks: dict[int, Future] = {}
        self._chunks_epoch = -1

    def _shuffled(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def _augmented_chunk(self, epoch: int, chunk: int, rows: np.ndarray) -> np.ndarray:
        # One generator per (epoch, chunk): the same faces whichever thread makes them.
        faces = self.images[rows].astype(np.float32)
        return robust_augment(faces, np.random.default_rng([self.seed, epoch, chunk, 1]), self.robust)

    def _chunk(self, chunk: int) -> np.ndarray:
        with self._lock:
            if self._chunks_epoch != self.epoch:  # a new epoch: queue all of its chunks at once
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="robust-feed")
                for future in self._chunks.values():
                    future.cancel()
                span = self.chunk_batches * self.batch_size
                self._chunks = {k: self._pool.submit(self._augmented_chunk, self.epoch, k,
                                                     self._order[k * span:(k + 1) * span])
                                for k in range(math.ceil(len(self.images) / span))}
                self._chunks_epoch = self.epoch
            future = self._chunks[chunk]
        return future.result()

    def __getitem__(self, index: int):
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        if self.robust > 0:
            chunk, within = divmod(index, self.chunk_batches)
            start = within * self.batch_size
            faces = self._chunk(chunk)[start:start + len(rows)]
        else:
            faces = self.images[rows].astype(np.float32)
        y = self.targets[rows]
        return faces, {"logits": y, "probabilities": y}

    def on_epoch_end(self) -> None:
        with self._lock:
            self.epoch += 1
            self._order = self._shuffled(self.epoch)

    def close(self) -> None:
        """Stops the worker threads (pending chunks are dropped)."""
        with self._lock:
            for future in self._chunks.values():
                future.cancel()
            self._chunks = {}
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


__all__ = ["FaceBatches"]
