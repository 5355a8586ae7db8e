"""``python -m fer_keras.train``: train GiMeFive or a baseline, evaluate, export.

With no ``--data`` it trains on the embedded synthetic faces. Examples::

    python -m fer_keras.train --epochs 5
    python -m fer_keras.train --data fer2013=../shared/data/fer2013 --run-dir runs/fer2013
    python -m fer_keras.train --run-dir runs/fer2013 --data fer2013=../shared/data/fer2013 --resume
"""

from __future__ import annotations

import argparse
import sys

from fer_keras.cli import add_data_arguments, data_config
from fer_keras.config import (
    CLASS_WEIGHTING,
    FLIP_TTA,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    STRATEGIES,
    TrainConfig,
    apply_hparams,
)
from fer_keras.data.augment import AUGMENTATIONS
from fer_keras.data.readers.common import DatasetError
from fer_keras.models import MODELS

D = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_keras.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=sorted(MODELS), default=D.model, help="architecture. Default: %(default)s")
    m.add_argument(
        "--width", type=float, default=D.width, help="layer width multiplier (1 = published). Default: %(default)s"
    )
    add_data_arguments(p)
    t = p.add_argument_group("training (defaults: the GiMeFive paper's recipe)")
    t.add_argument("--epochs", type=int, default=D.epochs, help="maximum epochs. Default: %(default)s")
    t.add_argument("--batch-size", type=int, default=D.batch_size, help="global batch size. Default: %(default)s")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer, help="Default: %(default)s")
    t.add_argument("--lr", type=float, default=D.learning_rate, help="(peak) learning rate. Default: %(default)s")
    t.add_argument("--momentum", type=float, default=D.momentum, help="SGD momentum. Default: %(default)s")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum for SGD (as the accelerator runs)")
    t.add_argument(
        "--schedule", choices=SCHEDULES, default=D.schedule, help="learning-rate schedule. Default: %(default)s"
    )
    t.add_argument(
        "--warmup-epochs", type=int, default=D.warmup_epochs, help="linear warm-up epochs. Default: %(default)s"
    )
    t.add_argument("--weight-decay", type=float, default=D.weight_decay,
                   help="L2 weight decay (coupled for sgd/adam, decoupled for adamw). Default: %(default)s")
    t.add_argument("--label-smoothing", type=float, default=D.label_smoothing, help="Default: %(default)s")
    t.add_argument(
        "--augment",
        default=",".join(D.augment),
        help=f"comma-separated augmentations from {', '.join(AUGMENTATIONS)}; 'none' for none. Default: %(default)s",
    )
    t.add_argument("--augment-strength", type=float, default=D.augment_strength, help="Default: %(default)s")
    t.add_argument("--class-weighting", choices=CLASS_WEIGHTING, default=D.class_weighting, help="Default: %(default)s")
    t.add_argument("--soft-labels", action="store_true", help="train on annotator vote distributions (FER+)")
    t.add_argument("--patience", type=int, default=D.patience,
                   help="early-stopping patience on validation accuracy, in epochs. Default: %(default)s")
    t.add_argument("--keep-checkpoints", type=int, default=D.keep_checkpoints,
                   help="how many of the latest epoch checkpoints to keep in the run directory (more than 1 to "
                        "average the last epochs with python -m fer_keras.average). Default: %(default)s")
    t.add_argument("--steps-per-epoch", type=int, default=None, help="cap on training steps per epoch (quick runs)")
    t.add_argument("--precision", choices=PRECISIONS, default=D.precision,
                   help="training precision; mixed_bfloat16 is faster on CPUs with AMX or AVX512-BF16 and on "
                        "recent GPUs (evaluation and export use float32). Default: %(default)s")
    t.add_argument("--flip-tta", choices=FLIP_TTA, default=D.flip_tta,
                   help="average each face's prediction with its mirror image at test time and in the export; "
                        "auto: only if that raises validation accuracy. Default: %(default)s")
    t.add_argument("--shifted-validation", action="store_true",
                   help="choose checkpoints on the validation faces plus a copy under the robustness shifts "
                        "(framing, tilt, light, blur, JPEG, occluders; fer_keras.data.shifts)")
    t.add_argument(
        "--init-from",
        default="",
        metavar="MODEL",
        help="start from this .keras model's (or shipped model's) weights, same architecture (the logits "
        "layer may differ: six to seven classes); it must not have trained on this run's val/test faces",
    )
    t.add_argument("--distill-from", default=D.distill_from, metavar="MODEL[,MODEL...]",
                   help="blend this teacher's probabilities on each clean training face into its target (with "
                        "--augment robust: the student learns to say on a shifted face what the teacher says on "
                        "the clean one); several, separated by commas: their ensemble (mean probabilities) "
                        "teaches. None may have trained on this run's val/test faces")
    t.add_argument("--distill-weight", type=float, default=D.distill_weight,
                   help="share of the teacher's probabilities in the targets, 0-1. Default: %(default)s")
    t.add_argument("--seed", type=int, default=D.seed, help="seed for weights, splits, shuffling. Default: %(default)s")
    t.add_argument("--hparams", default=None, metavar="JSON",
                   help="best_hparams.json from python -m tuning.search; its values override the flags above")
    t.add_argument("--strategy", choices=STRATEGIES, default=D.strategy,
                   help="default: one device; mirrored: this machine's GPUs (tf.distribute); multi-worker: "
                        "every process of a cluster (KERAS_BACKEND=jax, Keras's distribution API; the cluster from "
                        "KERAS_DISTRIBUTION_JOB_ADDRESSES/_NUM_PROCESSES/_PROCESS_ID or TF_CONFIG; README \"More "
                        "than one machine\"). Default: %(default)s")
    o = p.add_argument_group("output")
    o.add_argument("--run-dir", default=None, help="run directory. Default: runs/<model>")
    o.add_argument("--resume", action="store_true", help="continue the run in --run-dir after its last completed epoch")
    o.add_argument(
        "--export-base",
        default=D.export_base,
        help="SavedModel base path; the model goes to <base>/<export-name>/<next version>/; '' skips. "
        "Default: %(default)s",
    )
    o.add_argument("--export-name", default=None, help="model name under the export base. Default: the model name")
    o.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=1, help="Keras progress: 1 bar, 2 a line per epoch"
    )
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    augment = () if args.augment.strip().lower() in ("", "none") else tuple(a.strip() for a in args.augment.split(","))
    config = TrainConfig(
        model=args.model, width=args.width, data=data_config(args, args.seed), epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, learning_rate=args.lr, momentum=args.momentum,
        nesterov=args.nesterov, schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay, label_smoothing=args.label_smoothing, augment=augment,
        augment_strength=args.augment_strength, class_weighting=args.class_weighting, soft_labels=args.soft_labels,
        patience=args.patience, keep_checkpoints=args.keep_checkpoints, seed=args.seed,
        strategy=args.strategy, run_dir=args.run_dir or f"runs/{args.model}", export_base=args.export_base,
        export_name=args.export_name or "", steps_per_epoch=args.steps_per_epoch,
        init_from=args.init_from, precision=args.precision, flip_tta=args.flip_tta,
        shifted_validation=args.shifted_validation, distill_from=args.distill_from,
        distill_weight=args.distill_weight,
    )
    if args.hparams:
        config = apply_hparams(config, args.hparams)
    return config


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.multiworker import ClusterError, exit_if_joined
    from fer_keras.training import (  # TensorFlow loads here, after --help
        RunDirError,
        train,
    )

    try:
        config = config_from_args(args)
        train(config, resume=args.resume, verbose=args.verbose)
    except (DatasetError, RunDirError, ClusterError, ValueError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        exit_if_joined(2)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
