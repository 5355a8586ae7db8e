"""Weights: the shipped models, and the one half-precision format every trained model is stored in.

::

    from fer_keras import pretrained
    model = pretrained.load()                      # the default, "gimefive-fer2013"
    print(pretrained.card("gimefive-fer2013"))      # its model card

The format (``fer-keras-weights-1``) is a JSON manifest ``NAME.json`` beside
one or more ``.npz`` parts. The parts hold the weights in half precision, in
``model.get_weights()`` order (arrays ``w000``, ``w001``...); the manifest
names the parts with their SHA-256, the architecture record (how to build the
model: :func:`fer_keras.models.build_from_architecture`), the class view and
anything measured on the weights. A shipped model is one part, ``NAME.npz``,
with its card ``NAME.md`` in ``fer_keras/weights/``; ``fer_keras.portable``
writes the same format split into parts of at most 15 MB, which is what a lent
accelerator can send back.

``python -m fer_keras.pretrained`` lists the shipped models, prints their cards,
packs a trained model and records figures measured on it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from fer_keras.config import DEFAULT_PRETRAINED

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT = DEFAULT_PRETRAINED
MAX_MEGABYTES = 25.0
FORMAT = "fer-keras-weights-1"
# fer_keras.portable's manifests before the formats were one: the same layout under another name.
FORMATS = (FORMAT, "fer-keras-portable-1")


class PretrainedError(ValueError):
    """A pretrained name that does not ship, or weights that fail their checksum."""


# ----------------------------------------------------------------------------- the format


def sha256(data: bytes | Path) -> str:
    """SHA-256 of bytes or of a file's contents."""
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def to_half(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """The arrays in float16; weights whose values do not survive it (beyond its range) are refused."""
    halves = []
    for i, w in enumerate(arrays):
        with np.errstate(over="ignore"):
            half = np.asarray(w).astype(np.float16)
        if not np.all(np.isfinite(half)):
            raise ValueError(f"weight {i} ({np.shape(w)}) overflows half precision")
        halves.append(half)
    return halves


def write_weights(arrays: list[np.ndarray], directory: str | Path, name: str, meta: dict,
                  part_bytes: int = 0) -> dict:
    """Writes ``arrays`` in the weights format: ``NAME.npz`` (or ``NAME-partK.npz``, each holding at most
    ``part_bytes`` bytes of float16 weights, when ``part_bytes`` is set), then ``NAME.json`` with
    ``meta`` and the parts' checksums (written last and atomically, so a reader never sees a manifest
    whose parts are not all there). Returns the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for i, half in enumerate(to_half(arrays)):
        if part_bytes and groups[-1] and size + half.nbytes > part_bytes:
            groups.append({})
            size = 0
        groups[-1][f"w{i:03d}"] = half
        size += half.nbytes
    parts = []
    for k, group in enumerate(groups):
        file = f"{name}.npz" if len(groups) == 1 and not part_bytes else f"{name}-part{k}.npz"
        buf = io.BytesIO()
        np.savez_compressed(buf, **group)
        (directory / file).write_bytes(buf.getvalue())
        parts.append({"file": file, "sha256": sha256(buf.getvalue())})
    manifest = {**meta, "format": FORMAT, "dtype": "float16", "arrays": len(arrays), "parts": parts,
                "megabytes": round(sum((directory / p["file"]).stat().st_size for p in parts) / 2**20, 2)}
    tmp = directory / f"{name}.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, directory / f"{name}.json")
    return manifest


def read_manifest(path: str | Path) -> dict:
    """The manifest ``NAME.json`` of a weights file, checked to be one."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PretrainedError(f"{path}: not a readable weights manifest ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise PretrainedError(f"{path}: format {found!r}, expected {FORMAT!r}")
    return manifest


def read_weights(path: str | Path) -> tuple[dict, list[np.ndarray]]:
    """(manifest, float32 arrays) of the weights whose manifest is ``path``; every part's checksum is checked."""
    path = Path(path)
    manifest = read_manifest(path)
    arrays: dict[str, np.ndarray] = {}
    for part in manifest["parts"]:
        part_path = path.parent / part["file"]
        if not part_path.is_file() or sha256(part_path) != part["sha256"]:
            raise PretrainedError(f"{part_path} is missing or does not match its checksum: "
                                  "the file is damaged or incomplete (or a Git LFS pointer)")
        with np.load(part_path) as data:
            arrays.update({k: data[k] for k in data.files})
    try:
        return manifest, [arrays[f"w{i:03d}"].astype(np.float32) for i in range(manifest["arrays"])]
    except KeyError as err:
        raise PretrainedError(f"{path}: its parts lack weight {err}") from None


def weights_digest(manifest: dict) -> str:
    """One checksum for all the parts of a manifest."""
    return sha256("".join(p["sha256"] for p in manifest["parts"]).encode())


def model_from_weights(path: str | Path):
    """The float32 Keras model a weights manifest describes, with its weights."""
    from fer_keras.models import build_from_architecture

    manifest, weights = read_weights(path)
    arch = manifest["architecture"]
    model = build_from_architecture(arch, len(manifest["classes"]))
    if [w.shape for w in weights] != [tuple(w.shape) for w in model.weights]:
        raise PretrainedError(f"{path}: the weights do not fit the {arch['model']} architecture its manifest names")
    model.set_weights(weights)
    return model


def as_float32(model):
    """``model`` computing in float32: itself if it already does, else a float32 copy with the same
    weights (a model trained under a mixed-precision policy)."""
    import keras

    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def float32_layer(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=float32_layer)
    copy.set_weights(model.get_weights())
    return copy


def load_keras_model(path: str | Path):
    """A float32 Keras model from a ``.keras`` file (loaded in Keras safe mode), a weights manifest
    (``NAME.json``, as ``fer_keras.portable train`` writes) or a shipped model's name.

    Raises:
        PretrainedError: a missing or unreadable file, or a path that is none of the three.
    """
    import keras

    import fer_keras.models  # noqa: F401 (registers the custom layers the .keras files name)
    import fer_keras.optim  # noqa: F401

    p = Path(path)
    if not p.exists() and str(path) in available():
        return load(str(path))
    if p.suffix == ".json":
        return model_from_weights(p)
    if p.suffix != ".keras":
        raise PretrainedError(f"{p} is neither a .keras file, a weights manifest (.json) nor a shipped model name "
                              f"({', '.join(available()) or 'none'})")
    if not p.is_file():
        raise PretrainedError(f"model file {p} does not exist")
    if not zipfile.is_zipfile(p):  # Keras would call a truncated or corrupt file "not found"
        raise PretrainedError(f"cannot load {p}: it is not a .keras archive (a zip file); truncated or corrupt?")
    try:
        model = keras.saving.load_model(p, compile=False, safe_mode=True)
    except Exception as err:  # a corrupt zip, a foreign model
        raise PretrainedError(f"cannot load {p} as a Keras model: {err}") from None
    return as_float32(model)


# ----------------------------------------------------------------------------- the shipped models


def available(directory: Path = WEIGHTS_DIR) -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in Path(directory).glob("*.json") if p.with_suffix(".npz").is_file())


def info(name: str = DEFAULT, directory: Path = WEIGHTS_DIR) -> dict:
    """The manifest of a shipped model: architecture, classes, checksums and measured figures."""
    path = Path(directory) / f"{name}.json"
    if not path.is_file() or not path.with_suffix(".npz").is_file():
        names = ", ".join(available(directory)) or "none"
        raise PretrainedError(f"no pretrained model {name!r} (shipped: {names})")
    return read_manifest(path)


def card(name: str = DEFAULT, directory: Path = WEIGHTS_DIR) -> str:
    """The model card (Markdown) of a shipped model."""
    info(name, directory)
    path = Path(directory) / f"{name}.md"
    return path.read_text() if path.is_file() else ""


def load(name: str = DEFAULT, directory: Path = WEIGHTS_DIR):
    """The shipped model ``name`` as a Keras model (float32 weights, preprocessing inside).

    Raises:
        PretrainedError: unknown name, or weights whose checksum does not match
            (a truncated download or a Git LFS pointer instead of the file).
    """
    info(name, directory)
    return model_from_weights(Path(directory) / f"{name}.json")


def pack(model, name: str, directory: Path, classes: list[str], architecture: dict, extra: dict | None = None) -> Path:
    """Writes ``model``'s weights as shipped model ``name`` (one part); returns the ``.npz`` path.

    Weights whose values do not survive float16 (beyond its range), or more than
    ``MAX_MEGABYTES`` of them, are refused.
    """
    directory = Path(directory)
    meta = {"name": name, "classes": list(classes), "architecture": architecture, **(extra or {})}
    manifest = write_weights(model.get_weights(), directory, name, meta)
    if manifest["megabytes"] > MAX_MEGABYTES:
        for leftover in (directory / f"{name}.npz", directory / f"{name}.json"):
            leftover.unlink()
        raise ValueError(f"{name}: {manifest['megabytes']:.1f} MB of weights is above the {MAX_MEGABYTES:.0f} MB limit")
    return directory / f"{name}.npz"
