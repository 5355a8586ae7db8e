"""fer_keras.portable: pack -> train (any backend) -> unpack, on tiny synthetic data."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_keras import portable
from fer_keras.fitting import epoch_learning_rate, epochs_that_fit
from fer_keras.portable import PortableError, load_packed, model_from_manifest

REPO = Path(__file__).resolve().parents[1]
PACK_ARGS = ["--image-size", "32", "--synthetic-per-class", "12"]


def test_schedule_warms_up_then_decays_to_zero():
    rates = [epoch_learning_rate(e, 0.01, 2, 10) for e in range(1, 11)]
    assert rates[:2] == [0.005, 0.01]
    assert all(a > b for a, b in zip(rates[1:], rates[2:]))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_epoch_count_fits_the_deadline():
    # 2 epochs done at 100 s, 4 s per epoch, deadline 300 s with 20 s kept back: 45 more epochs.
    assert epochs_that_fit(2, 4.0, 100.0, 300.0, cap=400, margin=20.0) == 47
    assert epochs_that_fit(2, 4.0, 100.0, 300.0, cap=30, margin=20.0) == 30
    assert epochs_that_fit(2, 4.0, 290.0, 300.0, cap=400, margin=20.0) == 2  # already late: stop


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "faces.npz"
    assert portable.main(["pack", *PACK_ARGS, "--out", str(out)]) == 0
    return out


def test_pack_holds_train_and_val_as_train_splits_them(packed):
    data = load_packed(packed)
    assert data["meta"]["classes"] == ["happiness", "surprise", "sadness", "anger", "disgust", "fear"]
    assert data["images"].shape[1:] == (32, 32, 1)
    # synthetic data has no splits: 20 % test (not packed), 10 % of the rest validation
    assert (data["split"] == 0).sum() > (data["split"] == 1).sum() > 0
    assert len(data["images"]) < 6 * 12
    assert data["digests_differing"] == 0 and data["undecodable"] == 0


def test_corrupt_and_differently_decoded_faces_are_counted(packed, tmp_path):
    with np.load(packed) as src:
        arrays = {k: src[k] for k in src.files}
    offsets = arrays["offsets"]
    blob = arrays["blob"].copy()
    blob[offsets[0]:offsets[1]] = 0  # face 0: no longer an image
    arrays["blob"] = blob
    digests = arrays["digests"].copy()
    digests[1] = b"0" * 40  # face 1: decodes to other pixels than at packing
    arrays["digests"] = digests
    np.savez(tmp_path / "bad.npz", **arrays)
    data = load_packed(tmp_path / "bad.npz")
    assert data["undecodable"] == 1
    assert data["digests_differing"] == 1
    assert len(data["images"]) == len(offsets) - 2


def test_shards_load_as_one_pack_and_all_are_needed(packed, tmp_path):
    whole = load_packed(packed)
    summary = portable.pack_faces(_synthetic_config(), tmp_path / "faces.npz", shard_bytes=20_000)
    paths = summary["paths"]
    assert len(paths) > 2 and all(Path(p).name.startswith("faces-") for p in paths)
    joined = portable.load_packs(list(reversed(paths)))  # any order
    np.testing.assert_array_equal(joined["images"], whole["images"])
    np.testing.assert_array_equal(joined["labels"], whole["labels"])
    with pytest.raises(PortableError, match="a pack of"):
        portable.load_packs(paths[:-1])


def test_png_faces_are_packed_as_lossless_webp_when_smaller(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    for i in range(12):
        face = (cv2.GaussianBlur(rng.integers(0, 256, (48, 48)).astype(np.uint8), (5, 5), 2))
        for emotion in ("happy", "sad"):
            (root / emotion).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / emotion / f"{i}.png"), face)
    from fer_keras.train import build_parser, data_config

    config = data_config(build_parser().parse_args(["--data", f"folders={root}", "--image-size", "48"]))
    summary = portable.pack_faces(config, tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as data:
        first = data["blob"][data["offsets"][0]:data["offsets"][1]].tobytes()
    assert first[:4] == b"RIFF" and first[8:12] == b"WEBP"
    data = load_packed(tmp_path / "p.npz")
    assert data["digests_differing"] == 0  # lossless: the very pixels of the PNGs
    assert summary["train"] + summary["val"] == len(data["images"])


def _synthetic_config():
    from fer_keras.train import build_parser, data_config

    return data_config(build_parser().parse_args(PACK_ARGS))


def test_a_file_that_is_not_a_pack_is_named(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not numpy")
    with pytest.raises(PortableError, match="x.npz is not a packed face file"):
        load_packed(tmp_path / "x.npz")


@pytest.mark.slow
def test_train_then_unpack_round_trip(packed, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(portable, "PART_BYTES", 20_000)  # force several parts
    out = tmp_path / "out"
    rc = portable.main(["train", str(packed), "--out", str(out), "--name", "tiny", "--width", "0.0625",
                        "--epochs", "3", "--batch-size", "16", "--lr", "0.01", "--augment", "flip,rotate,erase"])
    assert rc == 0
    manifest = json.loads((out / "tiny.json").read_text())
    assert [h["epoch"] for h in manifest["history"]] == [1, 2, 3]
    assert [h["learning_rate"] for h in manifest["history"]] == [0.005, 0.01, 0.0]
    best = max(manifest["history"], key=lambda h: h["val_accuracy"])
    assert manifest["best_epoch"] == best["epoch"] and manifest["val_accuracy"] == best["val_accuracy"]
    assert len(manifest["parts"]) > 1

    model = model_from_manifest(out / "tiny.json")
    data = load_packed(packed)
    val = data["split"] == 1
    probs = model.predict(data["images"][val], verbose=0)["probabilities"]
    accuracy = float((probs.argmax(1) == data["labels"][val]).mean())
    assert abs(accuracy - manifest["val_accuracy"]) <= 1.0 / val.sum() + 1e-6  # float16 weights: a face at most

    assert portable.main(["unpack", str(out / "tiny.json"), "--out", str(tmp_path / "tiny.keras"),
                          "--curves", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "tiny.keras").is_file() and (tmp_path / "curves.png").stat().st_size > 1000

    from fer_keras import pretrained
    from fer_keras.pretrained.__main__ import main as pretrained_cli

    shipped = tmp_path / "shipped"
    assert pretrained_cli(["pack", str(tmp_path / "tiny.keras"), "--name", "tiny", "--manifest", str(out / "tiny.json"),
                            "--flip-tta", "--out", str(shipped)]) == 0
    meta = pretrained.info("tiny", shipped)
    assert meta["recipe"]["trainer"] == "fer_keras.portable" and meta["recipe"]["width"] == 0.0625
    assert meta["selected_epoch"] == manifest["best_epoch"] and meta["flip_tta"] is True
    assert meta["architecture"] == manifest["architecture"]
    loaded = pretrained.load("tiny", shipped).predict(data["images"][val], verbose=0)["probabilities"]
    assert np.abs(loaded - probs).max() < 1e-6
    # a JSON that is not a training manifest: one clear error naming what it lacks, nothing written
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"architecture": manifest["architecture"]}))
    assert pretrained_cli(["pack", str(tmp_path / "tiny.keras"), "--name", "other", "--manifest", str(wrong),
                            "--out", str(shipped)]) == 2
    err = capsys.readouterr().err
    assert "not a fer_keras.portable manifest" in err and "best_epoch" in err and "Traceback" not in err
    assert pretrained.available(shipped) == ["tiny"]

    part = out / manifest["parts"][0]["file"]
    part.write_bytes(part.read_bytes()[:-10])
    with pytest.raises(PortableError, match="does not match its checksum"):
        model_from_manifest(out / "tiny.json")


def test_robust_training_and_shifted_validation_run_from_a_pack(packed, tmp_path, capsys):
    rc = portable.main(["train", str(packed), "--out", str(tmp_path), "--name", "robust", "--width", "0.0625",
                        "--epochs", "2", "--batch-size", "16", "--augment", "flip,robust", "--shifted-validation",
                        "--workers", "2"])
    assert rc == 0
    val_faces = int((load_packed(packed)["split"] == 1).sum())
    assert f"validating on {2 * val_faces} faces" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "robust.json").read_text())
    assert [h["epoch"] for h in manifest["history"]] == [1, 2]
    assert manifest["recipe"]["augment"] == "flip,robust" and manifest["recipe"]["shifted_validation"] is True
    assert portable.main(["train", str(packed), "--out", str(tmp_path), "--augment", "flip,mixup"]) == 2
    assert "mixup / cutmix" in capsys.readouterr().err


def test_a_deadline_needs_two_warm_up_epochs(packed, tmp_path, capsys):
    rc = portable.main(["train", str(packed), "--out", str(tmp_path), "--deadline", "60", "--warmup-epochs", "1"])
    assert rc == 2
    assert "--deadline needs --warmup-epochs >= 2" in capsys.readouterr().err


# What `portable train` imports, directly or in its functions (pack-only imports are left out).
DEVICE_ROOTS = ("fer_keras.portable", "fer_keras.train", "fer_keras.fitting", "fer_keras.data.augment",
                "fer_keras.data.batches",
                "fer_keras.data.shifts", "fer_keras.models",
                "fer_keras.optim", "fer_keras.pretrained", "fer_keras.data.faces", "fer_keras.data.readers.common")


def _module_file(name: str) -> Path:
    path = REPO / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _top_level_imports(name: str) -> set[str]:
    tree = ast.parse(_module_file(name).read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = []  # imports inside functions run only when called
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_the_device_training_path_never_imports_tensorflow_at_module_level():
    """The machines lent for training have JAX and PyTorch but no TensorFlow."""
    seen, todo, offenders = set(), list(DEVICE_ROOTS), []
    while todo:
        name = todo.pop()
        if name in seen or not _module_file(name).is_file():
            continue
        seen.add(name)
        for imported in _top_level_imports(name):
            if imported.split(".")[0] == "tensorflow":
                offenders.append(name)
            elif imported.startswith("fer_keras."):
                todo.append(imported)
    assert "fer_keras.data.taxonomy" in seen and "fer_keras.models.preprocessing" in seen
    assert offenders == []


def test_training_runs_on_jax_without_tensorflow(packed, tmp_path):
    """Where JAX is installed, a real `portable train` run with TensorFlow made unimportable."""
    pytest.importorskip("jax")
    script = f"""
import sys, importlib.abc
class NoTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ImportError("tensorflow is not installed here")
sys.meta_path.insert(0, NoTensorFlow())
from fer_keras import portable
rc = portable.main(["train", {str(packed)!r}, "--out", {str(tmp_path)!r}, "--width", "0.0625", "--epochs", "2",
                    "--batch-size", "16", "--augment", "flip,robust", "--shifted-validation"])
print("rc", rc, "tensorflow" in sys.modules)
"""
    # XLA backend optimisations off: the tiny model compiles in about half the time (it only has to run).
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO),
           "XLA_FLAGS": "--xla_backend_optimization_level=0"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("rc 0 False")
    assert json.loads((tmp_path / "run.json").read_text())["backend"] == "jax"


@pytest.mark.slow
def test_a_six_class_start_gets_a_fresh_head_for_seven_classes(packed, tmp_path, capsys):
    six = tmp_path / "six"
    assert portable.main(["train", str(packed), "--out", str(six), "--name", "six", "--width", "0.0625",
                          "--epochs", "1", "--batch-size", "16"]) == 0
    seven_pack = tmp_path / "seven.npz"
    assert portable.main(["pack", *PACK_ARGS, "--classes", "seven", "--out", str(seven_pack)]) == 0
    seven = tmp_path / "seven"
    # learning rate 0: the copied weights must come back unchanged
    assert portable.main(["train", str(seven_pack), "--out", str(seven), "--name", "seven", "--init-from",
                          str(six / "six.json"), "--epochs", "1", "--batch-size", "16", "--lr", "0"]) == 0
    assert "6 classes there, 7 here; freshly initialised: logits" in capsys.readouterr().out
    donor, model = model_from_manifest(six / "six.json"), model_from_manifest(seven / "seven.json")
    assert model.output["logits"].shape[-1] == 7
    for name in ("block1_conv", "last_conv", "dense1"):
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0], donor.get_layer(name).get_weights()[0])
