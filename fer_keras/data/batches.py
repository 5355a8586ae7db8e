"""Training batches from faces held as NumPy arrays, for any Keras 3 backend.

``fer_keras.data.pipeline`` feeds ``fer_keras.train`` through tf.data. A machine
without TensorFlow (the lent accelerators run Keras on JAX) trains from packed
arrays instead; :class:`FaceBatches` is that feed: reshuffled every epoch
(seeded by the epoch, so a run is repeatable), with the ``robust`` augmentation
(``fer_keras.data.shifts.robust_augment``, NumPy and OpenCV) applied per face
on worker threads. The Keras augmentation layers stay inside the trained model.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from fer_keras.data.shifts import robust_augment


class FaceBatches(keras.utils.PyDataset):
    """``(faces float32 [B, S, S, 1] in 0..255, {"logits": y, "probabilities": y})`` batches.

    Args:
        images: ``[N, S, S, 1]`` faces, 0..255 (any real dtype).
        targets: ``[N, K]`` one-hot or soft targets.
        batch_size: faces per batch (the last batch may be smaller).
        robust: strength of the robust augmentation (0: off).
        seed: seed of the shuffling and of the augmentation.
        workers: threads preparing batches (OpenCV releases the GIL).
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, batch_size: int, *, robust: float = 0.0,
                 seed: int = 0, workers: int = 1):
        super().__init__(workers=max(1, workers), use_multiprocessing=False, max_queue_size=max(10, 2 * workers))
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} faces but {len(targets)} targets")
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1; got {batch_size}")
        self.images, self.targets = images, np.asarray(targets, np.float32)
        self.batch_size, self.robust, self.seed = int(batch_size), float(robust), int(seed)
        self.epoch = 0
        self._order = self._shuffled(0)

    def _shuffled(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.images))

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        faces = self.images[rows].astype(np.float32)
        if self.robust > 0:
            # One generator per (epoch, batch): the same faces whichever thread makes the batch.
            faces = robust_augment(faces, np.random.default_rng([self.seed, self.epoch, index, 1]), self.robust)
        y = self.targets[rows]
        return faces, {"logits": y, "probabilities": y}

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self._order = self._shuffled(self.epoch)


__all__ = ["FaceBatches"]
