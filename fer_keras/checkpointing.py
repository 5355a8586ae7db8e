"""Per-epoch checkpoints that make a killed run resumable, and validation-based selection.

At the end of every epoch the callback writes, each file atomically (written
aside, then renamed):

1. ``best.keras`` when validation accuracy improved;
2. ``checkpoints/epoch-NNNN.keras``: the model with its optimizer state;
3. ``state.json``: completed epochs, best score, patience counter and the
   full history, pointing at that checkpoint;
4. ``history.csv`` and ``last.keras`` (a hard link to the checkpoint).

``state.json`` is written after the checkpoint it names and older
checkpoints are deleted after it, so a run killed at any instant finds a
state and a checkpoint that agree, and resumes after its last completed epoch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras

STATE_FILE = "state.json"
_RENAME = {"probabilities_accuracy": "accuracy", "val_probabilities_accuracy": "val_accuracy"}


@dataclass
class RunState:
    epochs_done: int = 0
    best: float | None = None
    best_epoch: int | None = None
    wait: int = 0
    stopped: bool = False
    checkpoint: str | None = None
    history: list[dict] = field(default_factory=list)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_save_model(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def load_state(run_dir: Path) -> RunState | None:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    return RunState(**json.loads(path.read_text()))


def clean_logs(logs: dict) -> dict:
    """Keras log keys renamed for people (``val_probabilities_accuracy`` -> ``val_accuracy``)."""
    return {_RENAME.get(k, k): float(v) for k, v in logs.items() if not k.endswith("logits_loss")}


class RunCheckpoint(keras.callbacks.Callback):
    """Checkpointing, best-model selection and early stopping on one monitored value.

    Args:
        run_dir: the run directory.
        state: the state to continue (a fresh :class:`RunState` for a new run).
        monitor: the cleaned log key to maximise (``val_accuracy``).
        patience: epochs without improvement before training stops.
        writer: write the files (in a multi-worker run only process 0 does; every process keeps
            the same state and takes the same decisions).
        save_scope: a context manager factory to save the model within (multi-worker: outside the
            distribution, see ``fer_keras.multiworker.undistributed``).
        keep: how many of the latest epoch checkpoints stay on disk (1: the one a resume needs; more
            for ``python -m fer_keras.average`` over the last epochs).
    """

    def __init__(self, run_dir: Path, state: RunState, monitor: str = "val_accuracy", patience: int = 15,
                 writer: bool = True, save_scope=None, keep: int = 1):
        super().__init__()
        if keep < 1:
            raise ValueError(f"keep must be at least 1 checkpoint; got {keep}")
        self.keep = keep
        self.run_dir = Path(run_dir)
        self.state = state
        self.monitor = monitor
        self.patience = patience
        self.writer = writer
        self.save_scope = save_scope or contextlib.nullcontext
        if writer:
            (self.run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)

    def _learning_rate(self) -> float | None:
        try:
            return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        except Exception:  # a schedule without a readable current value
            return None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        s = self.state
        row = {"epoch": epoch + 1, **clean_logs(logs or {})}
        lr = self._learning_rate()
        if lr is not None:
            row["learning_rate"] = lr
        if self.monitor not in row:
            raise KeyError(f"cannot select checkpoints: {self.monitor!r} is not among the logged values {sorted(row)}")
        s.history = [h for h in s.history if h["epoch"] <= epoch] + [row]
        improved = s.best is None or row[self.monitor] > s.best
        if improved:
            s.best, s.best_epoch, s.wait = row[self.monitor], epoch + 1, 0
        else:
            s.wait += 1
        s.stopped = s.wait >= self.patience
        if s.stopped:
            self.model.stop_training = True
        ckpt = self.run_dir / "checkpoints" / f"epoch-{epoch + 1:04d}.keras"
        s.epochs_done, s.checkpoint = epoch + 1, str(ckpt.relative_to(self.run_dir))
        if not self.writer:
            return
        with self.save_scope():
            if improved:
                atomic_save_model(self.model, self.run_dir / "best.keras")
            atomic_save_model(self.model, ckpt)
        atomic_write_text(self.run_dir / STATE_FILE, json.dumps(asdict(s), indent=1))
        self._write_history()
        last_tmp = self.run_dir / "last.tmp.keras"
        last_tmp.unlink(missing_ok=True)
        os.link(ckpt, last_tmp)
        os.replace(last_tmp, self.run_dir / "last.keras")
        for old in (self.run_dir / "checkpoints").glob("epoch-*.keras"):
            number = old.stem.removeprefix("epoch-")
            if number.isdigit() and int(number) <= epoch + 1 - self.keep:
                old.unlink(missing_ok=True)

    def _write_history(self) -> None:
        keys: list[str] = []
        for row in self.state.history:
            keys += [k for k in row if k not in keys]
        tmp = self.run_dir / "history.csv.tmp"
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.state.history)
        os.replace(tmp, self.run_dir / "history.csv")
