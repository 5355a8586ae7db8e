"""The search space: a KerasTuner HyperModel over the same builders training uses.

``build(hp)`` draws the model shape and the optimizer and calls
``fer_keras.models.build_model`` and ``fer_keras.training.compile_model``;
``fit(hp, ...)`` draws the batch size and augmentation strength and builds the
tf.data pipelines. :func:`trial_config` turns a trial's values into the
:class:`~fer_keras.config.TrainConfig` fields that ``best_hparams.json`` holds,
so ``python -m fer_keras.train --hparams best_hparams.json`` retrains exactly
the winner.
"""

from __future__ import annotations

import dataclasses
import math

import keras_tuner as kt

from fer_keras.config import TrainConfig
from fer_keras.data.faces import FaceSet
from fer_keras.data.pipeline import augmentation, make_dataset, mixer, robust_strength
from tuning import FAMILIES


def trial_config(values: dict, family: str) -> dict:
    """TrainConfig fields (model, model_options, width, recipe) for one set of hyperparameter values."""
    values = {k: round(v, 8) if isinstance(v, float) else v for k, v in values.items()}
    if family == "gimefive":
        model, options = "convnet", {
            "blocks": values["blocks"], "dense_units": values["dense_units"],
            "conv_dropout": values["conv_dropout"], "dense_dropout": values["dense_dropout"],
            "batch_norm": values["batch_norm"], "pooling": values["pooling"],
        }
    else:
        model, options = values["depth"], {}
    return {
        "model": model, "model_options": options, "width": values["width"], "optimizer": values["optimizer"],
        "learning_rate": values["learning_rate"], "weight_decay": values["weight_decay"],
        "label_smoothing": values["label_smoothing"], "batch_size": values["batch_size"],
        "augment_strength": values["augment_strength"],
    }


class FERHyperModel(kt.HyperModel):
    """GiMeFive-family or ResNet search space over decoded faces.

    Args:
        family: "gimefive" (depth 4-6 blocks, width, dropout, dense head,
            batch norm, pooling) or "resnet" (18 or 34, width).
        train, val: decoded faces.
        base: the training config whose other fields (augmentations, input
            size, class weighting) every trial keeps.
    """

    def __init__(self, family: str, train: FaceSet, val: FaceSet, base: TrainConfig):
        super().__init__(name=f"fer-{family}")
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; choose one of: {', '.join(FAMILIES)}")
        self.family, self.train, self.val, self.base = family, train, val, base

    def _config(self, hp) -> TrainConfig:
        values = {
            "width": hp.Choice("width", [0.25, 0.5, 1.0], default=1.0),
            "optimizer": hp.Choice("optimizer", ["sgd", "adam", "adamw"], default="sgd"),
            "learning_rate": hp.Float("learning_rate", 1e-4, 1e-2, sampling="log", default=1e-3),
            "weight_decay": hp.Float("weight_decay", 1e-6, 1e-3, sampling="log", default=1e-4),
            "label_smoothing": hp.Float("label_smoothing", 0.0, 0.2, step=0.05, default=0.0),
            "batch_size": hp.Choice("batch_size", [16, 32, 64], default=16),
            "augment_strength": hp.Float("augment_strength", 0.0, 1.5, step=0.5, default=1.0),
        }
        if self.family == "gimefive":
            deepest = min(6, int(math.log2(self.base.data.image_size)))  # each block halves the face
            values.update(
                blocks=hp.Int("blocks", 4, deepest, default=min(5, deepest)),
                dense_units=hp.Choice("dense_units", [512, 1024, 2048], default=2048),
                conv_dropout=hp.Float("conv_dropout", 0.0, 0.4, step=0.1, default=0.2),
                dense_dropout=hp.Float("dense_dropout", 0.2, 0.6, step=0.1, default=0.5),
                batch_norm=hp.Boolean("batch_norm", default=True),
                pooling=hp.Choice("pooling", ["max", "avg"], default="max"),
            )
        else:
            values["depth"] = hp.Choice("depth", ["resnet18", "resnet34"], default="resnet18")
        return dataclasses.replace(self.base, **trial_config(values, self.family))

    def build(self, hp):
        from fer_keras.models import build_model
        from fer_keras.training import compile_model

        config = self._config(hp)
        model = build_model(config.model, num_classes=self.train.taxonomy.num_classes,
                            input_size=config.data.image_size, width=config.width, **config.model_options)
        compile_model(model, config, math.ceil(len(self.train) / config.batch_size))
        return model

    def fit(self, hp, model, *args, **kwargs):
        config = self._config(hp)
        augment = (
            augmentation(config.augment, config.augment_strength, config.seed) if config.augment_strength else None
        )
        train = make_dataset(self.train, config.batch_size, training=True, augment=augment,
                             mix=mixer(config.augment, config.augment_strength), seed=config.seed,
                             robust=robust_strength(config.augment, config.augment_strength))
        val = make_dataset(self.val, config.batch_size)
        return model.fit(train, validation_data=val, **kwargs)
