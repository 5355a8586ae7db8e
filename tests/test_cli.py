"""The commands as users type them: --help documents every flag, bad input gives one clear error."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_keras import evaluate, export, train

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("module", [train, evaluate, export])
def test_every_flag_has_help(module):
    parser = module.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{module.__name__}: {action.option_strings} has no help"


def test_train_help_runs_without_tensorflow_noise():
    out = subprocess.run([sys.executable, "-m", "fer_keras.train", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--data", "--classes", "--model", "--epochs", "--optimizer", "--schedule", "--weight-decay",
                 "--label-smoothing", "--augment", "--class-weighting", "--seed", "--hparams", "--run-dir",
                 "--resume", "--strategy", "--image-size", "--batch-size", "--lr"):
        assert flag in out.stdout


@pytest.mark.parametrize("argv,message", [
    (["--data", "fer2013=/does/not/exist"], "does not exist"),
    (["--data", "imagenet=/x"], "unknown data source"),
    (["--augment", "flip,twirl", "--epochs", "1"], "unknown augmentation"),
    (["--hparams", "/does/not/exist.json"], "cannot read JSON"),
])
def test_train_bad_input_is_one_clear_error(tmp_path, capsys, argv, message):
    code = train.main([*argv, "--run-dir", str(tmp_path / "r"), "--export-base", ""])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err


def test_evaluate_cli_on_a_trained_model(tmp_path, capsys):
    from fer_keras.models import build_model

    build_model("gimefive", width=1 / 16, input_size=32).save(tmp_path / "m.keras")
    code = evaluate.main(["--model", str(tmp_path / "m.keras"), "--image-size", "32", "--synthetic-per-class", "5",
                          "--out", str(tmp_path / "ev"), "--flip-tta"])
    assert code == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["n"] == 6 and report["flip_tta"] is True  # one synthetic test face per class of 5
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()
    assert "unseen_classes" not in report
    # A wider view adds where the faces of the class the model lacks go.
    assert evaluate.main(["--model", str(tmp_path / "m.keras"), "--image-size", "32", "--synthetic-per-class", "5",
                          "--classes", "seven", "--out", str(tmp_path / "ev7")]) == 0
    report = json.loads((tmp_path / "ev7" / "report.json").read_text())
    assert report["n"] == 6 and report["unseen_classes"]["neutral"]["n"] == 1
    assert np.isclose(sum(report["unseen_classes"]["neutral"]["predicted"].values()), 1.0)
    assert "neutral faces (not a class of the model, n=1): predicted as" in capsys.readouterr().out
    assert evaluate.main(["--model", str(tmp_path / "nope.keras")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_several_models_as_one_ensemble(tmp_path, capsys):
    import keras

    from fer_keras.data.taxonomy import SIX
    from fer_keras.evaluation import classification_report, predict_probabilities
    from fer_keras.loading import load_classifier
    from fer_keras.models import build_model

    paths = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        build_model("gimefive", width=1 / 16, input_size=32).save(tmp_path / f"m{seed}.keras")
        paths.append(str(tmp_path / f"m{seed}.keras"))
    assert evaluate.main(["--model", *paths, "--image-size", "32", "--synthetic-per-class", "20", "--split", "val",
                          "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["model"] == paths
    # the same faces the command read: the val split of synthetic data, 20 per class, seed 0
    from fer_keras.data.sources import DataConfig, load_data

    faces = load_data(DataConfig(image_size=32, synthetic_per_class=20)).splits["val"]
    members = [predict_probabilities(load_classifier(p), faces.images) for p in paths]
    mean = (members[0] + members[1]) / 2
    expected = classification_report(faces.labels, mean.argmax(1), SIX.classes)
    assert report["n"] == len(faces) and report["confusion_matrix"] == expected["confusion_matrix"]
    assert members[0].argmax(1).tolist() != members[1].argmax(1).tolist()  # two different models were averaged
    from fer_keras.loading import load_classifiers

    ensemble = load_classifiers(paths)
    assert np.allclose(ensemble.predict(faces.images.astype(np.float32))["probabilities"], mean, atol=1e-5)
    # models taking different face sizes cannot be averaged either
    build_model("gimefive", width=1 / 16, input_size=48).save(tmp_path / "m48.keras")
    assert evaluate.main(["--model", paths[0], str(tmp_path / "m48.keras"), "--image-size", "32"]) == 2
    assert "different face sizes" in capsys.readouterr().err
    # models of different class views cannot be averaged: one clear error naming both
    build_model("gimefive", width=1 / 16, input_size=32, num_classes=7).save(tmp_path / "seven.keras")
    assert evaluate.main(["--model", paths[0], str(tmp_path / "seven.keras"), "--image-size", "32"]) == 2
    err = capsys.readouterr().err
    assert "different class views" in err and "seven.keras (seven classes)" in err and "Traceback" not in err


def test_evaluate_split_all_uses_every_image_of_a_source_without_splits(tmp_path, capsys, image_writer):
    from fer_keras.models import build_model

    build_model("gimefive", width=1 / 16, input_size=32).save(tmp_path / "m.keras")
    for emotion, n in (("happy", 4), ("angry", 3), ("fear", 2), ("neutral", 2)):
        for i in range(n):
            image_writer(tmp_path / "posed" / emotion / f"{i}.png", seed=i)
    code = evaluate.main(["--model", str(tmp_path / "m.keras"), "--image-size", "32", "--data",
                          f"folders={tmp_path / 'posed'}", "--split", "all", "--out", str(tmp_path / "ev")])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["n"] == 9 and report["split"] == "all"  # every happy, angry and fear image; neutral is not six-class
    assert {c: v["support"] for c, v in report["per_class"].items() if v["support"]} == {
        "happiness": 4,
        "anger": 3,
        "fear": 2,
    }
    assert "recall" in out and "precision" in out


@pytest.mark.parametrize("argv,message", [
    (["--image-size", "0"], "image_size must be at least 16"),
    (["--width", "0"], "width must be positive"),
    (["--label-smoothing", "1.5"], "label_smoothing must be below 1"),
    (["--resume"], "holds no run to resume"),
])
def test_bad_training_options_fail_cleanly_and_leave_no_folder(tmp_path, capsys, argv, message):
    run_dir = tmp_path / "mistyped"
    code = train.main([*argv, "--epochs", "1", "--run-dir", str(run_dir), "--export-base", ""])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not run_dir.exists()


def test_a_start_that_fails_after_the_folder_is_made_removes_it(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = train.main(["--data", f"folders={tmp_path / 'missing'}", "--epochs", "1", "--run-dir", str(run_dir),
                       "--export-base", ""])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert not run_dir.exists()


def test_evaluate_detect_crops_whole_photos_and_counts_those_without_a_face(tmp_path, capsys):
    import cv2
    import skimage.data

    from fer_keras.data.textures import texture
    from fer_keras.models import build_model

    build_model("gimefive", width=1 / 16, input_size=32).save(tmp_path / "m.keras")
    astronaut = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    (tmp_path / "photos" / "happy").mkdir(parents=True)
    (tmp_path / "photos" / "angry").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "photos" / "happy" / "astronaut.png"), astronaut)
    cv2.imwrite(str(tmp_path / "photos" / "happy" / "astronaut-left.png"), astronaut[:, ::-1])
    cv2.imwrite(str(tmp_path / "photos" / "angry" / "wall.png"), texture("brick", 480, 640, np.random.default_rng(0)))
    argv = ["--model", str(tmp_path / "m.keras"), "--image-size", "32", "--data", f"folders={tmp_path / 'photos'}",
            "--split", "all", "--detect", "--out", str(tmp_path / "ev")]
    assert evaluate.main(argv) == 0
    assert "a face in 2 of 3 images (1 with none, left out)" in capsys.readouterr().err
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["n"] == 2 and report["detect"]["no_face"] == 1 and report["detect"]["images"] == 3
    assert report["detect"]["no_face_images"][0].endswith("wall.png") and report["detect"]["align"] is True
    assert report["detect"]["level"] is False  # keypoint framing without turning the face (FER2013 is not levelled)
    # the crops are the faces: both mirror images of the astronaut give mirrored crops
    from fer_keras.cli import data_config
    from fer_keras.data.sources import load_data
    from fer_keras.detection import make_detector
    from fer_keras.evaluate import build_parser
    from fer_keras.evaluation import crop_detected_faces

    faces = load_data(data_config(build_parser().parse_args(argv)), require_train=False).all_faces()
    cropped, missing = crop_detected_faces(faces, make_detector("blazeface"))
    assert len(cropped) == 2 and len(missing) == 1 and cropped.images.shape == (2, 32, 32, 1)
    a, b = cropped.images[..., 0].astype(float)
    assert np.corrcoef(a.ravel(), b[:, ::-1].ravel())[0, 1] > 0.8
    levelled, _ = crop_detected_faces(faces, make_detector("blazeface"), level=True)
    assert levelled.images.shape == cropped.images.shape
    assert not np.array_equal(levelled.images, cropped.images)  # the astronaut's head is tilted a little
    assert build_parser().parse_args([*argv, "--level"]).level is True
    assert evaluate.main([*argv[:-2], "--detector", "none"]) == 2
