"""Optimizers and learning-rate schedules for training."""

from __future__ import annotations

import keras
from keras import ops

from fer_keras.config import TrainConfig


class _CoupledL2:
    """Adds ``l2 * weight`` to each gradient before the optimizer's own update.

    This is PyTorch's ``weight_decay`` for SGD and Adam, which the GiMeFive
    paper used; Keras' own ``weight_decay`` is decoupled (applied to the
    weights directly). It applies to every trainable variable, biases and
    BatchNorm included, as PyTorch does.
    """

    def __init__(self, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def apply(self, grads, trainable_variables=None):
        variables = list(trainable_variables) if trainable_variables is not None else self._trainable_variables
        if self.l2:
            grads = [g if g is None else ops.add(g, ops.multiply(self.l2, ops.cast(v, g.dtype)))
                     for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


@keras.saving.register_keras_serializable(package="fer_keras")
class CoupledSGD(_CoupledL2, keras.optimizers.SGD):
    """SGD with momentum and coupled L2 weight decay (PyTorch's ``SGD``)."""


@keras.saving.register_keras_serializable(package="fer_keras")
class CoupledAdam(_CoupledL2, keras.optimizers.Adam):
    """Adam with coupled L2 weight decay (PyTorch's ``Adam``)."""


def learning_rate(config: TrainConfig, steps_per_epoch: int):
    """A constant rate, or a cosine decay over the run, with optional linear warm-up."""
    warmup = config.warmup_epochs * steps_per_epoch
    if config.schedule == "constant" and not warmup:
        return config.learning_rate
    total = max(1, config.epochs * steps_per_epoch - warmup)
    alpha = 1.0 if config.schedule == "constant" else 0.0
    if warmup:
        return keras.optimizers.schedules.CosineDecay(
            0.0, total, alpha=alpha, warmup_target=config.learning_rate, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, total, alpha=alpha)


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    lr = learning_rate(config, steps_per_epoch)
    if config.optimizer == "sgd":
        return CoupledSGD(l2=config.weight_decay, learning_rate=lr, momentum=config.momentum,
                          nesterov=config.nesterov)
    if config.optimizer == "adam":
        return CoupledAdam(l2=config.weight_decay, learning_rate=lr)
    return keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
