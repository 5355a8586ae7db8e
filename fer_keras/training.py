"""Training: data -> model -> resumable fit -> validation-selected checkpoint ->
one test evaluation -> report, plots and SavedModel export.

The run directory ends up holding ``config.json``, ``data_table.csv``,
``integrity.json``, ``best.keras``, ``last.keras``, ``history.csv``,
``state.json``, ``metrics.json``, ``confusion_matrix.png``,
``training_curves.png``, and ``export.txt`` naming the SavedModel version.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fer_keras.checkpointing import (
    RunCheckpoint,
    RunState,
    atomic_write_text,
    load_state,
)
from fer_keras.config import DataConfig, TrainConfig, teacher_names
from fer_keras.data.faces import FaceSet
from fer_keras.data.integrity import leaked_mask
from fer_keras.data.pipeline import (
    augmentation,
    class_weights,
    make_dataset,
    mixer,
    robust_strength,
)
from fer_keras.data.shifts import with_shifted_copy
from fer_keras.data.sources import LoadedData, load_data
from fer_keras.evaluation import evaluate_faces, predict_probabilities
from fer_keras.exporting import export_saved_model
from fer_keras.fitting import compile_classifier
from fer_keras.loading import as_float32, load_classifier
from fer_keras.models import build_model, transfer_weights
from fer_keras.multiworker import ClusterError, Watch, undistributed, weights_digest
from fer_keras.multiworker import start as start_multiworker
from fer_keras.optim import make_optimizer
from fer_keras.plots import plot_confusion_matrix, plot_training_curves


class RunDirError(RuntimeError):
    """The run directory conflicts with what was asked (exists without --resume, or another config)."""


@dataclass
class TrainResult:
    run_dir: Path
    state: RunState
    metrics: dict | None
    export_path: Path | None


def get_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` (one device) or ``mirrored`` (all local GPUs); ``multi-worker`` is not a
    tf.distribute strategy here (:func:`fer_keras.multiworker.start`)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def compile_model(model: keras.Model, config: TrainConfig, steps_per_epoch: int) -> None:
    """The run's optimizer and schedule (``fer_keras.optim``) with the shared objective."""
    compile_classifier(model, make_optimizer(config, steps_per_epoch), config.label_smoothing)


RESUME_MAY_CHANGE = ("epochs", "patience", "keep_checkpoints")  # the config fields a resumed run may change


def _with_defaults(saved: dict) -> dict:
    """A saved config as this version would write it: fields added since get their defaults."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    data_known = {f.name for f in dataclasses.fields(DataConfig)}
    values = {k: v for k, v in saved.items() if k in known}
    values["data"] = {k: v for k, v in saved.get("data", {}).items() if k in data_known}
    try:
        return json.loads(json.dumps(TrainConfig.from_dict(values).to_dict()))
    except (TypeError, ValueError):
        return saved


def _prepare_run_dir(config: TrainConfig, resume: bool, writer: bool = True) -> tuple[Path, RunState]:
    run_dir = Path(config.run_dir)
    state = load_state(run_dir)
    config_file = run_dir / "config.json"
    if resume and state is None:
        raise RunDirError(f"--resume: {run_dir} holds no run to resume (no state.json); check the folder name, "
                          "or leave out --resume to start a new run")
    if state is not None and not resume:
        raise RunDirError(f"{run_dir} already holds a run ({state.epochs_done} epochs done); "
                          "pass --resume to continue it or choose another --run-dir")
    if state is not None and config_file.is_file():
        saved = _with_defaults(json.loads(config_file.read_text()))
        mine = config.to_dict()
        differs = sorted(
            k for k in mine if k not in RESUME_MAY_CHANGE and json.dumps(saved.get(k)) != json.dumps(mine[k])
        )
        if differs:
            raise RunDirError(f"cannot resume {run_dir}: its config differs in {', '.join(differs)} "
                              f"(only {', '.join(RESUME_MAY_CHANGE)} may change when resuming)")
    if writer:  # in a multi-worker run, process 0 alone writes
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_file, json.dumps(config.to_dict(), indent=2))
    return run_dir, state or RunState()


def train(config: TrainConfig, *, resume: bool = False, verbose: int = 1, progress: bool = True) -> TrainResult:
    """Runs (or resumes) a training run described by ``config``.

    Args:
        config: the run.
        resume: continue the run in ``config.run_dir`` after its last completed epoch.
        verbose: Keras fit verbosity (1: progress bar, 2: one line per epoch).
        progress: show progress bars while decoding images.

    Returns:
        the run directory, final state, test metrics and export path.
    """
    team = None
    if config.strategy == "multi-worker":
        team = start_multiworker()  # JAX's distributed runtime must start before any other JAX work in the process
        strategy = tf.distribute.get_strategy()
    else:
        strategy = get_strategy(config.strategy)
    writer = team is None or team.cluster.is_chief
    fresh = not Path(config.run_dir).exists()
    previous_policy = keras.mixed_precision.global_policy()
    try:
        run_dir, state = _prepare_run_dir(config, resume, writer)
        if team is not None:
            team.agree("the run", {"epochs done": state.epochs_done, "config": config.to_dict()},
                       "every process must run the same command on a run directory they all see (shared storage)")
        keras.utils.set_random_seed(resume_seed(config.seed, state.epochs_done))
        keras.mixed_precision.set_global_policy(config.precision)
        return _train(config, run_dir, state, verbose, progress, strategy, team)
    except BaseException as err:
        if team is not None:
            team.abort(str(err) or type(err).__name__)
        if writer and fresh and load_state(Path(config.run_dir)) is None:
            # failed before its first epoch: leave no half-made folder
            import shutil

            shutil.rmtree(config.run_dir, ignore_errors=True)
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config: TrainConfig, run_dir: Path, state: RunState, verbose: int, progress: bool,
           strategy: tf.distribute.Strategy, team: Watch | None = None) -> TrainResult:
    writer = team is None or team.cluster.is_chief
    data = load_data(config.data, progress=progress)
    if writer:
        data.save_table(run_dir / "data_table.csv")
        atomic_write_text(run_dir / "integrity.json", json.dumps(data.integrity.to_dict(), indent=1))
    print(data.table_text())
    print(data.integrity.summary())
    if "val" not in data.splits:
        raise RunDirError(
            "no validation faces: checkpoints are chosen on validation data, so a validation split is required"
        )

    train_faces = data.splits["train"]
    weights = (
        class_weights(train_faces.labels, data.taxonomy.num_classes) if config.class_weighting == "balanced" else None
    )
    seed, part, augment_seed = resume_seed(config.seed, state.epochs_done), None, None
    if team is not None:
        team.agree("the data", {s: len(f) for s, f in data.splits.items()} | {"classes": data.taxonomy.classes},
                   "every process must read the same data folders")
        c = team.cluster
        team.local_batch(config.batch_size)  # checks that it divides
        part = (c.process_id, c.num_processes)
        augment_seed = seed + 104729 * c.process_id  # each process its own augmentation of its slices
        print(f"multi-worker: process {c.process_id} of {c.num_processes} trains on slice {c.process_id} of every "
              f"global batch of {config.batch_size} ({config.batch_size // c.num_processes} faces)")
    if config.distill_from:
        train_faces = with_teacher_targets(train_faces, config.distill_from, config.distill_weight,
                                           config.soft_labels)
    train_ds = make_dataset(train_faces, config.batch_size, training=True,
                            soft_labels=config.soft_labels or bool(config.distill_from),
                            augment=augmentation(config.augment, config.augment_strength,
                                                 seed if augment_seed is None else augment_seed),
                            mix=mixer(config.augment, config.augment_strength),
                            weights=weights, seed=seed,
                            robust=robust_strength(config.augment, config.augment_strength), part=part)
    if config.shifted_validation:
        data.splits["val"] = with_shifted_copy(data.splits["val"], config.seed)
        print(f"validating on {len(data.splits['val'])} faces: the validation faces and a copy under the shift suite")
    # Every process validates on all the validation faces: the global batch holds each face once per
    # process, so the accuracy is that of one process, and every process takes the same decisions.
    val_ds = make_dataset(data.splits["val"], config.batch_size, soft_labels=False)
    steps = math.ceil(len(train_faces) / config.batch_size)
    if part is not None and 0 < len(train_faces) % config.batch_size < part[1]:
        steps -= 1  # the last batch, too small to slice, is left out
    if config.steps_per_epoch:
        steps = min(steps, config.steps_per_epoch)
        train_ds = train_ds.repeat()

    scope = team.distribution().scope() if team is not None else strategy.scope()
    with scope:
        if state.checkpoint and (run_dir / state.checkpoint).is_file():
            print(f"resuming {run_dir} after epoch {state.epochs_done}")
            model = keras.saving.load_model(run_dir / state.checkpoint)
        else:
            state = RunState()
            model = build_model(config.model, num_classes=data.taxonomy.num_classes,
                                input_size=config.data.image_size, width=config.width, **config.model_options)
            if config.init_from:
                _initialise_from(model, config.init_from)
            compile_model(model, config, steps)

        if not (state.stopped or state.epochs_done >= config.epochs):
            try:
                model.fit(
                    train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=state.epochs_done,
                    steps_per_epoch=steps if config.steps_per_epoch else None,
                    callbacks=[RunCheckpoint(run_dir, state, patience=config.patience, writer=writer,
                                             keep=config.keep_checkpoints,
                                             save_scope=undistributed if team is not None else None)],
                    verbose=verbose,
                )
            except (ValueError, RuntimeError) as err:
                if team is not None and not isinstance(err, ClusterError):
                    team.collective_failed(err)  # a peer went away mid-step: names it and exits
                raise
    if team is not None:
        team.agree("the end of training", state.epochs_done)
        print(f"multi-worker: process {team.cluster.process_id} ends with weights {weights_digest(model)} "
              f"after {state.epochs_done} epochs")
        team.finish()
        if not writer:
            return TrainResult(run_dir, state, None, None)
    if (state.stopped or state.epochs_done >= config.epochs) and (run_dir / "metrics.json").is_file():
        print(f"{run_dir} is finished ({state.epochs_done} epochs); its test report is metrics.json")
        export = run_dir / "export.txt"
        return TrainResult(run_dir, state, json.loads((run_dir / "metrics.json").read_text()),
                           Path(export.read_text().strip()) if export.is_file() else None)
    return finish_run(config, run_dir, state, data)


def resume_seed(seed: int, epochs_done: int) -> int:
    """The seed of the shuffling and augmentation of a run (re)started after ``epochs_done`` epochs.

    Seeded the same after a resume, the data would come in the order and with the flips of the run's
    first epoch: faces the restored model has just been trained on, in the same batches, which made
    the first resumed epoch log training accuracy far above what an uninterrupted run logs (0.56
    against 0.16 on synthetic faces). A fresh seed per restart gives the resumed epochs new orders.
    """
    return seed + 7919 * epochs_done


def with_teacher_targets(faces: FaceSet, teacher: str, weight: float, soft_labels: bool) -> FaceSet:
    """``faces`` whose targets are ``weight`` x the teacher's flip-averaged probabilities on the clean
    faces + ``1 - weight`` x their own (vote distributions with ``soft_labels``, else one-hot).

    ``teacher`` may name several models separated by commas: the teacher is then their ensemble, the mean
    of their flip-averaged probabilities (every one loaded and checked before any labels the faces). The
    teacher sees each face once, here, as it is on disk; augmentation later changes only the student's
    input, so the target of a shifted face stays what the teacher says on the clean one."""
    classes = faces.taxonomy.num_classes
    models = []
    for name in teacher_names(teacher):
        model = load_classifier(name)  # float32 already; a SavedModel or shipped name works too
        size = (getattr(model, "input_shape", None) or (None, None))[1]
        if size is not None and size != faces.images.shape[1]:
            raise RunDirError(f"--distill-from {name}: the teacher takes {size} px faces, this run's faces are "
                              f"{faces.images.shape[1]} px (--image-size)")
        probe = model.predict(faces.images[:1], verbose=0)["probabilities"]
        if probe.shape[-1] != classes:
            raise RunDirError(f"--distill-from {name}: the teacher has {probe.shape[-1]} classes, this run "
                              f"{classes} ({', '.join(faces.taxonomy.classes)})")
        models.append((name, model))
    kind = f"the mean of {len(models)} teachers'" if len(models) > 1 else "its"
    print(f"distilling from {teacher}: {kind} flip-averaged probabilities on the {len(faces)} clean training "
          f"faces, weight {weight}")
    taught = np.mean([predict_probabilities(model, faces.images, flip_tta=True) for _, model in models],
                     axis=0).astype(np.float32)
    own = faces.soft if soft_labels else np.eye(classes, dtype=np.float32)[faces.labels]
    out = faces.select(np.arange(len(faces)))
    out.soft = (weight * taught + (1.0 - weight) * own).astype(np.float32)
    return out


def _initialise_from(model: keras.Model, source: str) -> None:
    """Copies the weights of ``source`` (a .keras file or shipped model name) into ``model``, layer by layer.

    Layers are matched by name. A layer whose weights have other shapes keeps its
    fresh initialisation (the ``logits`` layer when the class view changes, six
    to seven classes); if that is the case for more than the head, the models
    are not the same architecture and this is an error.
    """
    donor = load_classifier(source)
    if not isinstance(donor, keras.Model):
        raise ValueError(f"--init-from {source}: needs a .keras model or a shipped model name, not a SavedModel")
    kept = transfer_weights(donor, model, f"--init-from {source}")
    copied = sum(1 for layer in model.layers if layer.weights) - len(kept)
    print(f"initialised {copied} layers from {source}" + (f"; freshly initialised: {', '.join(kept)}" if kept else ""))


def finish_run(config: TrainConfig, run_dir: Path, state: RunState, data: LoadedData) -> TrainResult:
    """Evaluates the validation-selected checkpoint on the test split once, plots, and exports it."""
    plot_training_curves(state.history, run_dir / "training_curves.png", state.best_epoch)
    best = as_float32(keras.saving.load_model(run_dir / "best.keras", compile=False))
    metrics = None
    # Flip test-time augmentation is decided on validation faces, before the test split is touched.
    val_plain = evaluate_faces(best, data.splits["val"])["accuracy"]
    val_flipped = evaluate_faces(best, data.splits["val"], flip_tta=True)["accuracy"]
    flip_tta = config.flip_tta == "on" or (config.flip_tta == "auto" and val_flipped > val_plain)
    print(f"validation accuracy {val_plain:.4f}, with flip TTA {val_flipped:.4f}: "
          f"{'using' if flip_tta else 'not using'} flip TTA (--flip-tta {config.flip_tta})")
    if "test" in data.splits:
        test = data.splits["test"]
        others = [data.splits[s] for s in ("train", "val") if s in data.splits]
        metrics = evaluate_faces(best, test, leaked=leaked_mask(test, *others), flip_tta=flip_tta)
        metrics.update(selected_epoch=state.best_epoch, val_accuracy=state.best, epochs_done=state.epochs_done,
                       val_accuracy_no_tta=val_plain, val_accuracy_flip_tta=val_flipped)
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
        plot_confusion_matrix(
            metrics["confusion_matrix"],
            data.taxonomy.classes,
            run_dir / "confusion_matrix.png",
            title=f"{config.model}, test accuracy {metrics['accuracy']:.3f} (epoch {state.best_epoch})",
        )
        print(f"test accuracy {metrics['accuracy']:.4f} (macro-F1 {metrics['macro_f1']:.4f}) "
              f"of the epoch-{state.best_epoch} checkpoint (val accuracy {state.best:.4f}); "
              f"without {metrics['leaked']} leaked faces: {metrics['accuracy_without_leaked']}")
    export_path = None
    if config.export_base and keras.backend.backend() != "tensorflow":
        # tf.saved_model traces the model with TensorFlow ops: a model run on another backend cannot be traced.
        print(f"not exported: a SavedModel needs KERAS_BACKEND=tensorflow (this run used {keras.backend.backend()}); "
              f"export it with: python -m fer_keras.export {run_dir / 'best.keras'} --base {config.export_base} "
              f"--name {config.served_name}" + (" --flip-tta" if flip_tta else ""))
    elif config.export_base:
        export_path = export_saved_model(best, config.export_base, config.served_name, data.taxonomy.classes,
                                         flip_tta=flip_tta)
        atomic_write_text(run_dir / "export.txt", str(export_path) + "\n")
        print(f"exported SavedModel to {export_path}")
    return TrainResult(run_dir, state, metrics, export_path)

