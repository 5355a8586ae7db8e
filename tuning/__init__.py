"""KerasTuner Hyperband search over the fer_keras model builders (``python -m tuning.search``); the
best hyperparameters it writes feed ``python -m fer_keras.train --hparams``."""
