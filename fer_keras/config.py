"""Configuration: every default in one place.

:class:`DataConfig` (defined beside the readers in ``fer_keras.data.sources``,
re-exported here) says which faces to read and how to split them,
:class:`TrainConfig` how to train on them (the GiMeFive paper's recipe by
default), :data:`ACCELERATOR_RECIPE` the recipe of the runs on a lent
accelerator (``fer_keras.portable``). The command lines parse their flags into
these classes and take their defaults from here; tuning writes
``best_hparams.json`` whose keys are field names of these classes
(``--hparams`` applies them).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from fer_keras.data.sources import DataConfig

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine")
STRATEGIES = ("default", "mirrored", "multi-worker")
CLASS_WEIGHTING = ("none", "balanced")
# mixed_bfloat16: bfloat16 compute, float32 weights; 1.4x the training speed of float32 on a
# CPU with AMX (BENCHMARKS.md). Evaluation and export always run a float32 copy.
PRECISIONS = ("float32", "mixed_bfloat16")
FLIP_TTA = ("auto", "on", "off")
CLASS_VIEWS = ("six", "seven")

# The architecture trained, exported and served when none is named.
DEFAULT_MODEL = "gimefive"
# The shipped weights used when no model is named (fer_keras.pretrained).
DEFAULT_PRETRAINED = "gimefive-fer2013"


def teacher_names(distill_from: str) -> list[str]:
    """The teachers ``distill_from`` names: one model, or several separated by commas (an ensemble)."""
    return [name.strip() for name in distill_from.split(",")]


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Defaults are the GiMeFive paper's recipe.

    Attributes:
        model: registry name (``fer_keras.models.MODELS``).
        width: multiplier on every layer width (1.0 is the published model).
        model_options: further keyword arguments of the model builder (the
            tuner's shape choices for ``convnet``: blocks, dense_units, ...).
        data: which data to read and how to split it.
        epochs: maximum epochs (early stopping may end sooner).
        batch_size: global batch size.
        optimizer: "sgd" (momentum), "adam" or "adamw".
        learning_rate: peak learning rate.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD (the accelerator runs' choice, ``fer_keras.portable``).
        schedule: "constant" or "cosine" (decay to 0 over ``epochs``).
        warmup_epochs: linear warm-up epochs before the schedule.
        weight_decay: L2 weight decay; coupled (added to gradients, as
            PyTorch's SGD does) for sgd and adam, decoupled for adamw.
        label_smoothing: cross-entropy label smoothing.
        augment: augmentation names (``fer_keras.data.pipeline.AUGMENTATIONS``).
        augment_strength: scale of every augmentation's range.
        class_weighting: "none" or "balanced" sample weights.
        soft_labels: train on annotator vote distributions where a source has them (FER+).
        patience: early-stopping patience in epochs, on validation accuracy.
        keep_checkpoints: how many of the latest epoch checkpoints stay in the run directory (1 is
            what a resume needs; more to average the last epochs' weights, ``fer_keras.average``).
        seed: seed for weights, shuffling and augmentation.
        strategy: tf.distribute strategy: "default", "mirrored" or "multi-worker".
        run_dir: where checkpoints, metrics and plots go.
        export_base: SavedModel base path (``<base>/<export_name>/<version>/``); "" to skip export.
        export_name: model name under the export base (TF Serving's model name); "" for ``model``.
        steps_per_epoch: cap on training steps per epoch (None: the whole split).
        precision: "float32" or "mixed_bfloat16" (Keras mixed precision) while training.
        flip_tta: flip test-time augmentation for the test evaluation and the
            export: "auto" uses it when it raises validation accuracy, "on", "off".
        init_from: start from the weights of this ``.keras`` model or shipped
            model name (same architecture; only the ``logits`` layer may differ,
            e.g. six classes to seven) instead of a random initialisation. Its
            training faces must not include this run's validation or test faces.
        shifted_validation: validate (choose checkpoints, decide flip TTA) on the
            validation faces plus a copy of them under the robustness shift suite.
        distill_from: a teacher (``.keras`` file, SavedModel or shipped name) whose
            flip-averaged probabilities on each *clean* training face are blended
            into that face's target: with augmentation (``robust``) the student
            learns to say on a shifted face what the teacher says on the clean one.
            The teacher must not have trained on this run's validation or test faces.
            Several models separated by commas: their ensemble (mean probabilities) teaches.
        distill_weight: share of the teacher's probabilities in the target (0-1).
    """

    model: str = DEFAULT_MODEL
    width: float = 1.0
    model_options: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 80
    batch_size: int = 16
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    schedule: str = "constant"
    warmup_epochs: int = 0
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ("flip",)
    augment_strength: float = 1.0
    class_weighting: str = "none"
    soft_labels: bool = False
    patience: int = 15
    keep_checkpoints: int = 1
    seed: int = 0
    strategy: str = "default"
    run_dir: str = f"runs/{DEFAULT_MODEL}"
    export_base: str = "models"
    export_name: str = ""
    steps_per_epoch: int | None = None
    init_from: str = ""
    precision: str = "float32"
    flip_tta: str = "auto"
    shifted_validation: bool = False
    distill_from: str = ""
    distill_weight: float = 0.5

    def __post_init__(self):
        checks = {
            "optimizer": (self.optimizer, OPTIMIZERS),
            "schedule": (self.schedule, SCHEDULES),
            "strategy": (self.strategy, STRATEGIES),
            "class_weighting": (self.class_weighting, CLASS_WEIGHTING),
            "precision": (self.precision, PRECISIONS),
            "flip_tta": (self.flip_tta, FLIP_TTA),
        }
        for name, (value, allowed) in checks.items():
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate}")
        if self.width <= 0:
            raise ValueError(f"width must be positive; got {self.width}")
        for name in ("weight_decay", "label_smoothing", "augment_strength", "warmup_epochs", "patience"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative; got {getattr(self, name)}")
        if not 0 <= self.distill_weight <= 1:
            raise ValueError(f"distill_weight must be from 0 to 1; got {self.distill_weight}")
        if self.distill_from and not all(teacher_names(self.distill_from)):
            raise ValueError(f"distill_from names teachers separated by commas, none empty; got {self.distill_from!r}")
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be below 1; got {self.label_smoothing}")
        if self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be at least 1; got {self.keep_checkpoints}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be at least 1; got {self.steps_per_epoch}")

    @property
    def served_name(self) -> str:
        """The model name under the export base: ``export_name``, or else the architecture's name."""
        return self.export_name or self.model

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(values: dict) -> "TrainConfig":
        values = dict(values)
        data = DataConfig(**{k: tuple(map(tuple, v)) if k == "label_map" else (tuple(v) if isinstance(v, list) else v)
                             for k, v in values.pop("data", {}).items()})
        if "augment" in values:
            values["augment"] = tuple(values["augment"])
        return TrainConfig(data=data, **values)


# The recipe of the runs on a lent accelerator (fer_keras.portable; the shipped models were trained
# with it): larger batches and a higher peak rate than the paper's, warm-up, cosine decay to zero.
ACCELERATOR_RECIPE = {
    "batch_size": 64, "learning_rate": 0.01, "momentum": 0.9, "warmup_epochs": 2, "weight_decay": 5e-4,
    "label_smoothing": 0.1, "augment": ("flip", "rotate", "zoom", "shift", "erase"), "augment_strength": 1.0,
    "epochs": 100, "schedule": "cosine", "precision": "float32",
}


def apply_hparams(config: TrainConfig, path: str | Path) -> TrainConfig:
    """``config`` with the values of a ``best_hparams.json`` file applied.

    The file holds ``{"hparams": {field: value}}`` (or a flat mapping); keys
    that are fields of :class:`TrainConfig` or :class:`DataConfig` are applied,
    any other key is an error.
    """
    try:
        payload = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"--hparams {path}: cannot read JSON ({err})") from None
    values = payload.get("hparams", payload)
    top = {f.name for f in dataclasses.fields(TrainConfig)}
    data_fields = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = set(values) - top - data_fields
    if unknown:
        raise ValueError(f"--hparams {path}: unknown keys {sorted(unknown)}")
    data = dataclasses.replace(config.data, **{k: v for k, v in values.items() if k in data_fields})
    updates = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items() if k in top and k != "data"}
    return dataclasses.replace(config, data=data, **updates)
