"""``python -m fer_keras.portable``: training on any Keras 3 backend, for accelerator machines without TensorFlow.

``fer_keras.train`` feeds its models through tf.data, so it needs TensorFlow. The
GPU machines this project is sometimes lent carry JAX and PyTorch but no
TensorFlow, accept a working tree of at most 64 MiB and return files of at most
16 MiB. This module splits a run into three steps that fit those limits::

    # here: the train and val splits, read and split exactly as fer_keras.train does
    python -m fer_keras.portable pack --data fer2013=../shared/data/fer2013 --out .gpu/fer2013-six.npz
    # there: KERAS_BACKEND=jax (or torch); stops in time for a deadline
    python -m fer_keras.portable train .gpu/fer2013-six.npz --out $OUT --name run --init-from gimefive-fer2013 \\
        --deadline 500
    # here: the best weights back into a .keras model that evaluate and pretrained pack take
    python -m fer_keras.portable unpack OUT/run.json --out runs/gpu/best.keras

``pack`` keeps each face's encoded bytes as they are on disk (FER2013's JPEGs
take 0.68 of their decoded pixels) with its label, soft target and the SHA-1
of its decoded pixels; ``train`` decodes them with the same OpenCV code and
counts digests that differ (another OpenCV build may decode JPEGs differently).
The test split is never packed: it is evaluated once, here, with
``python -m fer_keras.evaluate``.

``train`` uses the same pieces as ``fer_keras.train`` (model registry,
augmentation layers, the ``robust`` augmentation, which runs in NumPy/OpenCV
on worker threads through :class:`fer_keras.data.batches.FaceBatches`,
``--shifted-validation``, coupled-L2 SGD, label smoothing) with a per-epoch
schedule: linear warm-up, then cosine decay to zero over a number of epochs
fixed after timing the second epoch, so that the run ends before
``--deadline`` seconds. The checkpoint is chosen on validation accuracy; its
weights are written in float16 parts of at most 15 MB beside a JSON file with
the recipe and the per-epoch history, again every 30 seconds while it
improves, so a run killed at its machine's time limit still leaves its best
weights. It does not resume an optimizer state: to go on from a killed run,
start a new one with ``--init-from OUT/NAME.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from fer_keras.config import ACCELERATOR_RECIPE as R
from fer_keras.config import DEFAULT_MODEL, PRECISIONS
from fer_keras.data.taxonomy import get_taxonomy

START = time.monotonic()
PART_BYTES = 15 * 10**6
SAVE_INTERVAL_S = 30.0
FORMAT = "fer-keras-portable-1"  # of the packed face files


class PortableError(ValueError):
    """A packed file or weights manifest that cannot be used."""


# ----------------------------------------------------------------------------- pack (here)


def pack_faces(config, out: str | Path, shard_bytes: int = 0) -> dict:
    """Writes the train and val faces of ``config`` (a DataConfig) to ``out``, or to ``out``'s stem
    plus ``-0``, ``-1``... when ``shard_bytes`` splits them into files of at most that many bytes of
    images (a lent machine takes 64 MiB per call; files left there by one call stay for the next).
    Returns a summary."""
    import cv2

    from fer_keras.data.faces import _load_one, decode_gray, soft_target
    from fer_keras.data.sources import assign_splits, parse_source, read_source

    taxonomy = get_taxonomy(config.classes)
    blobs, labels, soft, splits, digests = [], [], [], [], []
    dropped, unreadable = 0, []
    for spec in config.sources or ("synthetic",):
        records, _ = read_source(spec, config)
        assign_splits(records, config)
        source = parse_source(spec)[0]
        for r in records:
            if r.split not in ("train", "val"):
                continue
            label = taxonomy.index(r.emotion)
            if label is None:
                dropped += 1
                continue
            loaded = _load_one(r, config.image_size)
            if loaded is None:
                unreadable.append(f"{source}:{r.name}")
                continue
            if r.pixels is not None:
                gray = r.pixels if r.pixels.ndim == 2 else cv2.cvtColor(r.pixels, cv2.COLOR_RGB2GRAY)
                data = cv2.imencode(".png", gray)[1].tobytes()
            else:
                data = Path(r.path).read_bytes()
                gray = decode_gray(data)
            # lossless WebP is 0.71 of FER+'s PNGs; FER2013's JPEGs are smaller as they are
            webp = cv2.imencode(".webp", gray, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes()
            blobs.append(webp if len(webp) < len(data) else data)
            labels.append(label)
            soft.append(soft_target(r, taxonomy, label))
            splits.append(0 if r.split == "train" else 1)
            digests.append(loaded[1])
    if not labels:
        raise PortableError(f"no training faces in {', '.join(config.sources) or 'synthetic'}")
    meta = {"format": FORMAT, "classes": list(taxonomy.classes), "view": config.classes,
            "image_size": config.image_size, "data": _jsonable(config), "dropped_labels": dropped,
            "unreadable": unreadable}
    shards = _shards([len(b) for b in blobs], shard_bytes)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out] if len(shards) == 1 else [out.with_name(f"{out.stem}-{k}{out.suffix}") for k in range(len(shards))]
    for (lo, hi), path in zip(shards, paths):
        offsets = np.cumsum([0] + [len(b) for b in blobs[lo:hi]]).astype(np.int64)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, blob=np.frombuffer(b"".join(blobs[lo:hi]), np.uint8), offsets=offsets,
                 labels=np.array(labels[lo:hi], np.int32), soft=np.stack(soft[lo:hi]).astype(np.float32),
                 split=np.array(splits[lo:hi], np.uint8), digests=np.array(digests[lo:hi], "S40"),
                 meta=np.array(json.dumps({**meta, "shard": [paths.index(path), len(paths)]})))
        os.replace(tmp, path)
    split = np.array(splits)
    return {"paths": [str(p) for p in paths], "megabytes": [round(p.stat().st_size / 1e6, 1) for p in paths],
            "train": int((split == 0).sum()), "val": int((split == 1).sum()), "dropped_labels": dropped,
            "unreadable": len(unreadable)}


def _shards(sizes: list[int], limit: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges whose byte sizes add up to at most ``limit`` (0: one range)."""
    if not limit:
        return [(0, len(sizes))]
    ranges, start, total = [], 0, 0
    for i, n in enumerate(sizes):
        if i > start and total + n > limit:
            ranges.append((start, i))
            start, total = i, 0
        total += n
    ranges.append((start, len(sizes)))
    return ranges


def _jsonable(config) -> dict:
    import dataclasses

    return json.loads(json.dumps(dataclasses.asdict(config), default=list))


def load_packed(path: str | Path) -> dict:
    """Decodes a packed file: float32 faces ``[N, S, S, 1]``, labels, soft targets, split mask and
    the number of faces whose decoded pixels differ from the packing machine's."""
    from fer_keras.data.faces import _resize, decode_gray

    try:
        data = np.load(path)
        meta = json.loads(str(data["meta"]))
    except (OSError, KeyError, ValueError) as err:
        raise PortableError(f"{path} is not a packed face file ({err})") from None
    if meta.get("format") != FORMAT:
        raise PortableError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    blob, offsets, size = data["blob"], data["offsets"], meta["image_size"]
    images = np.zeros((len(offsets) - 1, size, size, 1), np.float32)
    keep = np.ones(len(images), bool)
    differing = 0
    for i in range(len(images)):
        gray = decode_gray(blob[offsets[i]:offsets[i + 1]])
        if gray is None:
            keep[i] = False
            continue
        digest = hashlib.sha1(np.ascontiguousarray(gray).tobytes() + str(gray.shape).encode()).hexdigest()
        differing += digest.encode() != data["digests"][i]
        images[i, ..., 0] = _resize(gray, size)
    return {"meta": meta, "images": images[keep], "labels": data["labels"][keep], "soft": data["soft"][keep],
            "split": data["split"][keep], "undecodable": int((~keep).sum()), "digests_differing": int(differing)}


def load_packs(paths: list[str | Path]) -> dict:
    """:func:`load_packed` over every shard of one pack, concatenated; all shards must be there."""
    parts = [load_packed(p) for p in paths]
    meta = parts[0]["meta"]
    found = sorted(tuple(part["meta"].get("shard", [0, 1])) for part in parts)
    expected = [(k, found[0][1]) for k in range(found[0][1])]
    if found != expected:
        have = ", ".join(str(k) for k, _ in found)
        raise PortableError(
            f"{', '.join(map(str, paths))}: shards {have} given, a pack of {found[0][1]} needs each once"
        )
    for path, part in zip(paths, parts):
        if part["meta"]["data"] != meta["data"] or part["meta"]["classes"] != meta["classes"]:
            raise PortableError(f"{path} belongs to another pack than {paths[0]}")
    order = np.argsort([part["meta"].get("shard", [0, 1])[0] for part in parts])
    joined = {k: np.concatenate([parts[i][k] for i in order]) for k in ("images", "labels", "soft", "split")}
    return {"meta": meta, **joined, "undecodable": sum(p["undecodable"] for p in parts),
            "digests_differing": sum(p["digests_differing"] for p in parts)}


# ----------------------------------------------------------------------------- train (anywhere)


def train_packed(args: argparse.Namespace) -> dict:
    """One ``fit`` over a packed file: warm-up + cosine per epoch fitted to ``--deadline``, the
    validation-selected weights written in parts as it goes (``fer_keras.fitting``)."""
    import keras

    from fer_keras.data.augment import augmentation
    from fer_keras.fitting import BestWeights, EpochSchedule, compile_classifier
    from fer_keras.models import architecture_record, build_from_architecture
    from fer_keras.optim import CoupledSGD
    from fer_keras.pretrained import write_weights

    schedule = EpochSchedule(args.lr, args.warmup_epochs, args.epochs, args.deadline, START, SAVE_INTERVAL_S)
    keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    packed = load_packs(args.packed)
    meta, split = packed["meta"], packed["split"]
    classes, size = meta["classes"], meta["image_size"]
    targets = packed["soft"] if args.soft_labels else np.eye(len(classes), dtype=np.float32)[packed["labels"]]
    x, y = packed["images"][split == 0], targets[split == 0]
    xv, yv = packed["images"][split == 1], np.eye(len(classes), dtype=np.float32)[packed["labels"][split == 1]]
    if not len(xv):
        raise PortableError(f"{', '.join(args.packed)} has no validation faces")
    print(f"backend {keras.backend.backend()}; {len(x)} train / {len(xv)} val faces, {size} px; "
          f"{packed['digests_differing']} decoded differently here, {packed['undecodable']} undecodable "
          f"({time.monotonic() - START:.0f} s)", flush=True)

    names = tuple(args.augment.split(",")) if args.augment else ()
    if set(names) & {"mixup", "cutmix"}:
        raise PortableError("--augment mixup / cutmix mix pairs in the tf.data pipeline: train them with "
                            "python -m fer_keras.train")
    augment = augmentation(names, args.augment_strength, args.seed)
    feed = None
    if "robust" in names:  # NumPy/OpenCV per face, on worker threads beside the accelerator
        from fer_keras.data.batches import FaceBatches

        feed = FaceBatches(x, y, args.batch_size, robust=args.augment_strength, seed=args.seed,
                           workers=args.workers or min(16, os.cpu_count() or 1))
    if args.shifted_validation:
        from fer_keras.data.shifts import mixed_shifts

        shifted, _ = mixed_shifts(np.clip(xv, 0, 255).astype(np.uint8), args.seed)
        xv, yv = np.concatenate([xv, shifted.astype(np.float32)]), np.concatenate([yv, yv])
        print(f"validating on {len(xv)} faces: the validation faces and a copy under the shift suite", flush=True)
    if args.precision != "float32":
        keras.mixed_precision.set_dtype_policy(args.precision)
    architecture = architecture_record(args.model, size, args.width)
    if args.init_from:
        base, architecture = _initial_model(args.init_from, len(classes))
        if architecture["image_size"] != size:
            raise PortableError(f"--init-from {args.init_from} takes {architecture['image_size']} px faces, "
                                f"{', '.join(args.packed)} holds {size} px")
    else:
        base = build_from_architecture(architecture, len(classes))
    # Keras marks its rotate/zoom/shift layers as unfit for XLA (TensorFlow's image transform op is), which
    # would run every step eagerly: 0.37 s per batch of 64 on an H200. JAX's own transforms compile.
    jax_compiled = keras.backend.backend() == "jax"
    if jax_compiled and augment is not None:
        for layer in augment.layers:
            layer.supports_jit = True
    face = keras.Input((size, size, 1), name="face")
    trainer = keras.Model(face, base(augment(face) if augment is not None else face))
    compile_classifier(trainer, CoupledSGD(l2=args.weight_decay, learning_rate=0.0, momentum=args.momentum,
                                           nesterov=args.nesterov),
                       args.label_smoothing, jit_compile=True if jax_compiled else "auto")
    recipe = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    manifest = {"name": args.name, "classes": classes, "architecture": architecture, "recipe": recipe,
                "data": meta["data"], "train_faces": int(len(x)), "val_faces": int(len(xv)),
                "digests_differing": packed["digests_differing"], "backend": keras.backend.backend()}

    def write(weights: list, progress: dict) -> None:
        manifest.update(progress, epochs_planned=schedule.total)
        write_weights(weights, out, args.name, manifest, PART_BYTES)

    best = BestWeights(base, write, schedule, SAVE_INTERVAL_S)
    inputs = {"x": x, "y": {"logits": y, "probabilities": y}, "batch_size": args.batch_size} if feed is None \
        else {"x": feed}
    try:
        trainer.fit(**inputs, epochs=args.epochs, verbose=0,
                    validation_data=(xv, {"logits": yv, "probabilities": yv}),
                    validation_batch_size=args.batch_size, callbacks=[schedule, best])
    finally:
        if feed is not None:
            feed.close()  # chunks queued for an epoch the deadline cut off are dropped, not finished
    print(f"best val accuracy {best.best:.4f} at epoch {best.best_epoch} of {len(best.history)}; "
          f"wrote {out / (args.name + '.json')} ({time.monotonic() - START:.0f} s)", flush=True)
    return manifest


def _initial_model(source: str, num_classes: int):
    """(model, architecture) starting from a shipped model name or a weights manifest (``.json``).
    With another class count (six-class FER2013 weights for seven-class FER+) every layer but a
    fresh ``logits`` head is copied."""
    from fer_keras import pretrained
    from fer_keras.models import build_from_architecture, transfer_weights

    if source.endswith(".json"):
        donor = model_from_manifest(source)
        architecture = pretrained.read_manifest(source)["architecture"]
    else:
        donor = pretrained.load(source)
        architecture = pretrained.info(source)["architecture"]
    if donor.output["logits"].shape[-1] == num_classes:
        return donor, architecture
    model = build_from_architecture(architecture, num_classes)
    kept = transfer_weights(donor, model, f"--init-from {source}")
    print(f"--init-from {source}: {donor.output['logits'].shape[-1]} classes there, {num_classes} here; "
          f"freshly initialised: {', '.join(kept)}", flush=True)
    return model, architecture


# ----------------------------------------------------------------------------- unpack (here)


def model_from_manifest(path: str | Path):
    """The float32 Keras model whose weights a ``train`` manifest names (parts beside it, checksums checked)."""
    from fer_keras.pretrained import PretrainedError, model_from_weights

    try:
        return model_from_weights(path)
    except PretrainedError as err:
        raise PortableError(str(err)) from None


# ----------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    from fer_keras.cli import add_data_arguments

    p = argparse.ArgumentParser(prog="python -m fer_keras.portable", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    pk = sub.add_parser("pack", help="write the train and val faces of some data to one file")
    add_data_arguments(pk)
    pk.add_argument(
        "--seed", type=int, default=0, help="split seed (as fer_keras.train's --seed). Default: %(default)s"
    )
    pk.add_argument("--out", required=True, help="the .npz to write")
    pk.add_argument("--shard-megabytes", type=float, default=0.0,
                    help="split into files of at most this many MB of images, OUT-0.npz, OUT-1.npz... (0: one file)")

    tr = sub.add_parser("train", help="train from a packed file on any Keras backend")
    tr.add_argument("packed", nargs="+", help="the file(s) written by pack (every shard)")
    tr.add_argument("--out", required=True, help="folder for NAME.json and NAME-partK.npz")
    tr.add_argument("--name", default="run", help="file name stem. Default: %(default)s")
    tr.add_argument("--model", default=DEFAULT_MODEL, help="architecture. Default: %(default)s")
    tr.add_argument(
        "--width", type=float, default=1.0, help="layer width multiplier (1 = published). Default: %(default)s"
    )
    tr.add_argument("--init-from", default="", help="a shipped model name or a manifest .json to start from")
    tr.add_argument("--epochs", type=int, default=R["epochs"], help="maximum epochs. Default: %(default)s")
    tr.add_argument(
        "--deadline",
        type=float,
        default=0.0,
        help="seconds after start by which training must end (0: none); fixes the epoch count after epoch 2",
    )
    tr.add_argument("--batch-size", type=int, default=R["batch_size"], help="Default: %(default)s")
    tr.add_argument("--lr", type=float, default=R["learning_rate"], help="peak learning rate. Default: %(default)s")
    tr.add_argument("--momentum", type=float, default=R["momentum"], help="Default: %(default)s")
    tr.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    tr.add_argument("--warmup-epochs", type=int, default=R["warmup_epochs"], help="Default: %(default)s")
    tr.add_argument("--weight-decay", type=float, default=R["weight_decay"], help="coupled L2. Default: %(default)s")
    tr.add_argument("--label-smoothing", type=float, default=R["label_smoothing"], help="Default: %(default)s")
    tr.add_argument("--augment", default=",".join(R["augment"]), help="Default: %(default)s")
    tr.add_argument("--augment-strength", type=float, default=R["augment_strength"], help="Default: %(default)s")
    tr.add_argument("--soft-labels", action="store_true", help="train on vote distributions (FER+)")
    tr.add_argument("--shifted-validation", action="store_true",
                    help="choose the checkpoint on the validation faces plus a copy under the robustness shifts "
                         "(as fer_keras.train's flag)")
    tr.add_argument("--workers", type=int, default=0,
                    help="threads preparing --augment robust batches (0: the CPU count, at most 16)")
    tr.add_argument("--precision", choices=(*PRECISIONS, "mixed_float16"), default=R["precision"],
                    help="Default: %(default)s")
    tr.add_argument("--seed", type=int, default=0, help="Default: %(default)s")

    up = sub.add_parser("unpack", help="a manifest and its parts back into a .keras model")
    up.add_argument("manifest", help="NAME.json written by train")
    up.add_argument("--out", required=True, help="the .keras file to write")
    up.add_argument("--curves", default=None, help="also plot the training curves to this .png")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from fer_keras.data.readers.common import DatasetError

    try:
        if args.command == "pack":
            from fer_keras.cli import data_config

            summary = pack_faces(data_config(args, seed=args.seed), args.out, int(args.shard_megabytes * 1e6))
            print(json.dumps(summary))
        elif args.command == "train":
            train_packed(args)
        else:
            model = model_from_manifest(args.manifest)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            model.save(args.out)
            manifest = json.loads(Path(args.manifest).read_text())
            if args.curves:
                from fer_keras.plots import plot_training_curves

                history = [{k.replace("probabilities_", ""): v for k, v in row.items()} for row in manifest["history"]]
                plot_training_curves(history, Path(args.curves), manifest.get("best_epoch"))
            print(f"wrote {args.out}: best epoch {manifest.get('best_epoch')}, "
                  f"val accuracy {manifest.get('val_accuracy'):.4f} ({manifest.get('backend')})")
    except (PortableError, DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
