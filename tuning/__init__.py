"""KerasTuner search (Hyperband by default, Bayesian optimisation or random search) over the fer_keras
model builders (``python -m tuning.search``); the best hyperparameters it writes feed
``python -m fer_keras.train --hparams``."""

import fer_keras  # noqa: F401  (its environment defaults for TensorFlow, set before TensorFlow loads)

# Distributed search: a worker silent for this long is let go and its trial runs again elsewhere
# (tuning.runner.BudgetOracle); longer than one epoch of any trial.
DEFAULT_WORKER_TIMEOUT_S = 1800.0

# The families searched (tuning.hypermodel builds each) and every default of a search, here once:
# tuning.runner.SearchConfig and the tuning.search command line take them from this module, which
# imports nothing heavy (so --help is quick).
FAMILIES = ("gimefive", "resnet")
TUNER_NAMES = ("hyperband", "bayesian", "random")
OBJECTIVE_NAMES = ("val_accuracy", "val_loss")
SEARCH_DEFAULTS = {
    "family": FAMILIES[0], "tuner": TUNER_NAMES[0], "objective": OBJECTIVE_NAMES[0], "max_epochs": 20, "factor": 3,
    "iterations": 1,
    "out_dir": "runs/tuning", "project": "fer", "seed": 0, "augment": ("flip",),
}
