"""Running a search (Hyperband, Bayesian optimisation or random search) and reporting it: trials table,
objective plot, best_hparams.json."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras_tuner as kt

from fer_keras.config import DataConfig, TrainConfig
from fer_keras.data.sources import load_data
from tuning import DEFAULT_WORKER_TIMEOUT_S
from tuning import SEARCH_DEFAULTS as D
from tuning.hypermodel import FERHyperModel, trial_config

OBJECTIVES = {"val_accuracy": ("val_probabilities_accuracy", "max"), "val_loss": ("val_loss", "min")}


@dataclass(frozen=True)
class SearchConfig:
    """A search. ``out_dir/project`` holds KerasTuner's state (resumable) and the reports."""

    family: str = D["family"]
    tuner: str = D["tuner"]
    data: DataConfig = field(default_factory=DataConfig)
    objective: str = D["objective"]
    max_epochs: int = D["max_epochs"]
    factor: int = D["factor"]
    iterations: int = D["iterations"]
    max_trials: int | None = None
    time_budget_minutes: float | None = None
    out_dir: str = D["out_dir"]
    project: str = D["project"]
    seed: int = D["seed"]
    augment: tuple[str, ...] = D["augment"]
    worker_timeout_s: float = DEFAULT_WORKER_TIMEOUT_S

    @property
    def folder(self) -> Path:
        return Path(self.out_dir) / self.project


class BudgetOracle:
    """A KerasTuner oracle (mixed in before it) that stops handing out trials after a deadline or a trial
    count, and that lets a distributed search outlive a worker that died.

    KerasTuner's chief waits for every worker it has seen to ask for a trial and be told to stop,
    and for every trial it handed out to end: a worker killed mid-trial left its trial RUNNING and
    the chief (and the other workers, waiting for that Hyperband round) waiting for ever. Here a
    worker not heard from (asking for a trial, or reporting an epoch) for ``worker_timeout``
    seconds is let go: its trial goes back in the queue and runs again, from its start, on the
    next worker that asks; it is recorded once, when it ends. A worker that comes back under the
    same id later is a new worker.
    """

    def __init__(self, *args, deadline: float | None = None, trial_budget: int | None = None,
                 worker_timeout: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.trial_budget = trial_budget
        self.worker_timeout = worker_timeout
        self._heard: dict[str, float] = {}

    @kt.synchronized
    def create_trial(self, tuner_id):
        self._heard[tuner_id] = time.time()
        over_time = self.deadline is not None and time.time() > self.deadline
        if over_time or (self.trial_budget is not None and len(self.trials) >= self.trial_budget):
            self.max_trials = len(self.trials)  # the base oracle answers STOPPED from here on
        return super().create_trial(tuner_id)

    @kt.synchronized
    def update_trial(self, trial_id, metrics, step=0):
        for tuner_id, trial in self.ongoing_trials.items():
            if trial.trial_id == trial_id:
                self._heard[tuner_id] = time.time()
        return super().update_trial(trial_id, metrics, step=step)

    @kt.synchronized
    def release_silent_workers(self) -> list[str]:
        """Lets go of the workers silent for longer than ``worker_timeout``; returns their ids."""
        if not self.worker_timeout:
            return []
        now = time.time()
        silent = [t for t in {*self.tuner_ids, *self.ongoing_trials}
                  if now - self._heard.setdefault(t, now) > self.worker_timeout]
        for tuner_id in silent:
            self.tuner_ids.discard(tuner_id)
            self._heard.pop(tuner_id, None)
            trial = self.ongoing_trials.pop(tuner_id, None)
            if trial is not None:
                self._retry_queue.append(trial.trial_id)
                print(f"worker {tuner_id} silent for over {self.worker_timeout:.0f} s: its trial {trial.trial_id} "
                      "goes to the next worker that asks", flush=True)
            else:
                print(f"worker {tuner_id} silent for over {self.worker_timeout:.0f} s: no longer waited for",
                      flush=True)
        if silent:
            self.save()
        return silent

    def watch_workers(self, every: float = 5.0) -> threading.Thread:
        """Checks for silent workers every ``every`` seconds, in a daemon thread (the chief's)."""

        def loop():
            while True:
                time.sleep(every)
                self.release_silent_workers()

        thread = threading.Thread(target=loop, daemon=True, name="worker-watch")
        thread.start()
        return thread


class BudgetHyperbandOracle(BudgetOracle, kt.oracles.HyperbandOracle):
    """Hyperband (successive halving of many short trials) with the budget and the worker watch."""


class BudgetBayesianOracle(BudgetOracle, kt.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation (a Gaussian process over the finished trials proposes the next) with the
    budget and the worker watch; each trial trains ``max_epochs``."""


class BudgetRandomOracle(BudgetOracle, kt.oracles.RandomSearchOracle):
    """Random search with the budget and the worker watch; each trial trains ``max_epochs``."""


TUNERS = {"hyperband": BudgetHyperbandOracle, "bayesian": BudgetBayesianOracle, "random": BudgetRandomOracle}


class BudgetHyperband(kt.tuners.Hyperband):
    """``kt.Hyperband`` (same trial logic) on :class:`BudgetHyperbandOracle`."""

    kind = "hyperband"

    def __init__(self, hypermodel, *, objective, max_epochs, factor, hyperband_iterations, seed,
                 deadline=None, trial_budget=None, worker_timeout=None, **kwargs):
        oracle = BudgetHyperbandOracle(objective=objective, max_epochs=max_epochs, factor=factor,
                                       hyperband_iterations=hyperband_iterations, seed=seed,
                                       deadline=deadline, trial_budget=trial_budget, worker_timeout=worker_timeout)
        kt.Tuner.__init__(self, oracle=oracle, hypermodel=hypermodel, **kwargs)


class BudgetSearch(kt.Tuner):
    """Bayesian optimisation or random search (``kind``) on its budgeted oracle; every trial trains
    ``max_epochs`` epochs, as KerasTuner's own BayesianOptimization and RandomSearch tuners train the
    epochs ``search`` is given."""

    def __init__(self, hypermodel, *, kind, objective, max_epochs, seed, deadline=None, trial_budget=None,
                 worker_timeout=None, **kwargs):
        if kind not in ("bayesian", "random"):
            raise ValueError(f"kind must be bayesian or random; got {kind!r}")
        self.kind, self.max_epochs = kind, max_epochs
        oracle = TUNERS[kind](objective=objective, max_trials=trial_budget, seed=seed, deadline=deadline,
                              trial_budget=trial_budget, worker_timeout=worker_timeout)
        super().__init__(oracle=oracle, hypermodel=hypermodel, **kwargs)

    def run_trial(self, trial, *fit_args, **fit_kwargs):
        fit_kwargs.setdefault("epochs", self.max_epochs)
        return super().run_trial(trial, *fit_args, **fit_kwargs)


def is_chief() -> bool:
    """True for a standalone search and for the chief of a distributed one."""
    return os.environ.get("KERASTUNER_TUNER_ID", "chief") == "chief"


@dataclass
class SearchResult:
    rows: list[dict]
    best_path: Path
    objective: str

    def table_text(self, top: int = 20) -> str:
        keys = [k for k in self.rows[0] if k not in ("trial_id", "status", "score")] if self.rows else []
        lines = [f"{'trial':>6} {'status':>10} {self.objective:>12}  hyperparameters"]
        for row in self.rows[:top]:
            score = "-" if row["score"] is None else f"{row['score']:.4f}"
            lines.append(f"{row['trial_id']:>6} {row['status']:>10} {score:>12}  " +
                         ", ".join(f"{k}={row[k]}" for k in keys if row.get(k) is not None))
        return "\n".join(lines)


def make_tuner(config: SearchConfig, train, val) -> BudgetHyperband | BudgetSearch:
    base = TrainConfig(data=config.data, augment=config.augment, seed=config.seed, epochs=config.max_epochs)
    metric, direction = OBJECTIVES[config.objective]
    deadline = time.time() + 60 * config.time_budget_minutes if config.time_budget_minutes else None
    common = dict(objective=kt.Objective(metric, direction), max_epochs=config.max_epochs, seed=config.seed,
                  deadline=deadline, trial_budget=config.max_trials, directory=config.out_dir,
                  project_name=config.project, overwrite=False, worker_timeout=config.worker_timeout_s)
    hypermodel = FERHyperModel(config.family, train, val, base)
    if config.tuner == "hyperband":
        return BudgetHyperband(hypermodel, factor=config.factor, hyperband_iterations=config.iterations, **common)
    if config.tuner not in TUNERS:
        raise ValueError(f"tuner must be one of {', '.join(TUNERS)}; got {config.tuner!r}")
    if config.max_trials is None and deadline is None:
        raise ValueError(f"a {config.tuner} search needs --max-trials or --time-budget (Hyperband sizes itself)")
    return BudgetSearch(hypermodel, kind=config.tuner, **common)


def run_search(config: SearchConfig, verbose: int = 1) -> SearchResult | None:
    """Searches (or continues the search in ``config.folder``); the chief writes the reports.

    Returns:
        the result on the chief or a standalone search, None on a worker.
    """
    if config.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}")
    data = load_data(config.data, progress=verbose > 0)
    if "val" not in data.splits:
        raise ValueError("the search needs validation faces")
    tuner = make_tuner(config, data.splits["train"], data.splits["val"])
    if is_chief() and os.environ.get("KERASTUNER_ORACLE_IP"):  # the chief of a distributed search
        tuner.oracle.watch_workers()
    tuner.search(verbose=verbose)
    if not is_chief():
        return None
    return write_reports(tuner, config)


def write_reports(tuner, config: SearchConfig) -> SearchResult:
    metric, direction = OBJECTIVES[config.objective]
    rows = []
    for trial in tuner.oracle.trials.values():
        values = {k: round(v, 8) if isinstance(v, float) else v
                  for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        rows.append({"trial_id": trial.trial_id, "status": str(trial.status), "score": trial.score,
                     "epochs": trial.hyperparameters.values.get("tuner/epochs"), **values})
    done = [r for r in rows if r["score"] is not None]
    done.sort(key=lambda r: r["score"], reverse=direction == "max")
    rows = done + [r for r in rows if r["score"] is None]
    folder = config.folder
    folder.mkdir(parents=True, exist_ok=True)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with open(folder / "trials.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    plot_objective(tuner, folder / "objective.png", metric, direction)
    if not done:
        raise ValueError(f"no trial of {folder} finished; nothing to report")
    best = tuner.oracle.get_best_trials(1)[0]
    values = best.hyperparameters.values
    hparams = trial_config(values, config.family)
    payload = {"hparams": hparams, "score": best.score, "objective": config.objective, "trial_id": best.trial_id,
               "family": config.family, "epochs": values.get("tuner/epochs")}
    best_path = folder / "best_hparams.json"
    best_path.write_text(json.dumps(payload, indent=1))
    return SearchResult(rows, best_path, config.objective)


def plot_objective(tuner, path: Path, metric: str, direction: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = sorted((t for t in tuner.oracle.trials.values() if t.score is not None), key=lambda t: t.trial_id)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    if trials:
        scores = [t.score for t in trials]
        epochs = [t.hyperparameters.values.get("tuner/epochs", 1) for t in trials]
        ax.scatter(range(len(scores)), scores, c=epochs, cmap="viridis", label="trial (colour: epochs)")
        best = (max if direction == "max" else min)
        ax.plot(range(len(scores)), [best(scores[: i + 1]) for i in range(len(scores))], "r-", label="best so far")
        ax.legend()
    ax.set_xlabel("trial")
    ax.set_ylabel(metric)
    ax.set_title(f"{tuner.kind} search")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["SearchConfig", "SearchResult", "run_search", "make_tuner", "write_reports"]
