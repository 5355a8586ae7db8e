"""KerasTuner Hyperband search over the fer_keras model builders (``python -m tuning.search``); the
best hyperparameters it writes feed ``python -m fer_keras.train --hparams``."""

# Distributed search: a worker silent for this long is let go and its trial runs again elsewhere
# (tuning.runner.BudgetHyperbandOracle); longer than one epoch of any trial.
DEFAULT_WORKER_TIMEOUT_S = 1800.0
