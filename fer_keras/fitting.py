"""What every training run here shares, on any Keras 3 backend: the compiled loss and metric, and the
callbacks of a run fitted in one ``model.fit`` call.

``fer_keras.training`` (tf.data, resumable run folders) and ``fer_keras.portable``
(packed arrays on a lent accelerator, which has no TensorFlow) both compile with
:func:`compile_classifier` and train with one ``fit``; the accelerator run adds
:class:`EpochSchedule` (warm-up + cosine per epoch, fitted to a deadline) and
:class:`BestWeights` (validation-selected weights written as it goes).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras
import numpy as np


def compile_classifier(model: keras.Model, optimizer: keras.optimizers.Optimizer, label_smoothing: float = 0.0,
                       jit_compile="auto") -> None:
    """Cross-entropy on the ``logits`` output (from logits, with label smoothing) and accuracy on
    ``probabilities``: the objective of every training run and of the tuner's trials."""
    model.compile(
        optimizer=optimizer,
        loss={"logits": keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)},
        metrics={"probabilities": [keras.metrics.CategoricalAccuracy(name="accuracy")]},
        jit_compile=jit_compile,
    )


def epoch_learning_rate(epoch: int, peak: float, warmup: int, total: int) -> float:
    """The rate of 1-based ``epoch``: linear warm-up to ``peak`` over ``warmup`` epochs, then a
    cosine decay that reaches zero after epoch ``total``."""
    if epoch <= warmup:
        return peak * epoch / max(1, warmup)
    span = max(1, total - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(epoch - warmup, span) / span))


def epochs_that_fit(done: int, epoch_seconds: float, now: float, deadline: float, cap: int, margin: float) -> int:
    """Total epochs so that the rest, at ``epoch_seconds`` each, ends ``margin`` seconds before ``deadline``."""
    more = int((deadline - margin - now) // max(epoch_seconds, 1e-6))
    return max(done, min(cap, done + more))


def validation_accuracy(logs: dict) -> float:
    """The validation accuracy in a row of Keras logs (``val_accuracy`` or ``val_probabilities_accuracy``)."""
    keys = [k for k in logs if k.startswith("val_") and k.endswith("accuracy")]
    if not keys:
        raise ValueError(f"no validation accuracy in the training logs ({sorted(logs)})")
    return float(logs[keys[0]])


class EpochSchedule(keras.callbacks.Callback):
    """Sets the learning rate per epoch (:func:`epoch_learning_rate`) and, given a deadline, fixes
    the number of epochs after timing the second so that the cosine reaches zero in time, and stops
    the run early if an epoch would still pass the deadline.

    Args:
        peak, warmup, epochs: the schedule; ``epochs`` is the cap.
        deadline: seconds after ``started`` by which training must end (0: none).
        started: the ``time.monotonic()`` the deadline counts from.
        margin: seconds kept free before the deadline (for the last write of the weights).
    """

    def __init__(self, peak: float, warmup: int, epochs: int, deadline: float = 0.0, started: float | None = None,
                 margin: float = 30.0):
        super().__init__()
        if deadline and warmup < 2:
            raise ValueError("--deadline needs --warmup-epochs >= 2 (the second epoch is timed before the schedule "
                             "is fixed)")
        self.peak, self.warmup, self.total = float(peak), int(warmup), int(epochs)
        self.cap, self.deadline, self.margin = int(epochs), float(deadline), float(margin)
        self.started = time.monotonic() if started is None else started
        self.rate, self.seconds, self._began = 0.0, 0.0, 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.rate = epoch_learning_rate(epoch + 1, self.peak, self.warmup, self.total)
        self.model.optimizer.learning_rate.assign(self.rate)
        self._began = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        done, now = epoch + 1, time.monotonic()
        self.seconds = now - self._began
        if self.deadline and done == 2:
            self.total = epochs_that_fit(done, self.seconds, now - self.started, self.deadline, self.cap, self.margin)
            print(f"epoch 2 took {self.seconds:.1f} s: {self.total} epochs fit before the {self.deadline:.0f} s "
                  "deadline", flush=True)
        if self.deadline and done < self.total and now - self.started + self.seconds > self.deadline - 5:
            print(f"stopping after epoch {done}: the next would pass the deadline", flush=True)
            self.total = done
        if done >= self.total:
            self.model.stop_training = True


class BestWeights(keras.callbacks.Callback):
    """Keeps the weights of ``model`` (the classifier inside the trained model) from the epoch best on
    validation accuracy, a history row per epoch, and hands both to ``write`` every ``interval``
    seconds while it improves and when training ends (so a run killed at a time limit leaves its best).

    Args:
        model: the classifier whose weights are kept.
        write: ``(weights, {"history", "best_epoch", "val_accuracy", "epochs_done"}) -> None``.
        schedule: the run's :class:`EpochSchedule` (its rate, epoch time and planned total go in the rows).
        interval: seconds between writes.
    """

    def __init__(self, model: keras.Model, write: Callable[[list, dict], None], schedule: EpochSchedule | None = None,
                 interval: float = 30.0):
        super().__init__()
        self.classifier, self.write, self.schedule, self.interval = model, write, schedule, float(interval)
        self.history: list[dict] = []
        self.best, self.best_epoch, self.weights, self._saved_at = -1.0, 0, None, 0.0

    def summary(self) -> dict:
        return {"history": self.history, "best_epoch": self.best_epoch, "val_accuracy": self.best,
                "epochs_done": len(self.history)}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = dict(logs or {})
        row = {"epoch": epoch + 1}
        if self.schedule is not None:
            row.update(learning_rate=self.schedule.rate, seconds=round(self.schedule.seconds, 2))
        row.update({k.replace("probabilities_", ""): float(v) for k, v in logs.items()})
        self.history.append(row)
        val = validation_accuracy(logs)
        if val > self.best:
            self.best, self.best_epoch = val, epoch + 1
            self.weights = [np.array(w) for w in self.classifier.get_weights()]
        total = self.schedule.total if self.schedule is not None else "?"
        print(f"epoch {epoch + 1}/{total} lr {row.get('learning_rate', float('nan')):.5f} "
              f"loss {row.get('loss', float('nan')):.4f} val {val:.4f} best {self.best:.4f} "
              f"({row.get('seconds', 0.0):.1f} s)", flush=True)
        now = time.monotonic()
        if self.weights is not None and now - self._saved_at > self.interval:
            self.write(self.weights, self.summary())
            self._saved_at = now

    def on_train_end(self, logs=None) -> None:
        if self.weights is not None:
            self.write(self.weights, self.summary())


__all__ = ["BestWeights", "EpochSchedule", "compile_classifier", "epoch_learning_rate", "epochs_that_fit",
           "validation_accuracy"]
