"""python -m fer_keras.robustness: the report's arithmetic, detector crops, the command, and its errors."""

import json

import numpy as np
import pytest

from fer_keras import robustness
from fer_keras.data.faces import load_faces
from fer_keras.data.synthetic import synthetic_records
from fer_keras.data.taxonomy import SIX


class ExactMatch:
    """A stand-in classifier: the right class for a face it has seen unchanged, class 0 for anything else."""

    def __init__(self, faces):
        self.known = {f.tobytes(): label for f, label in zip(faces.images, faces.labels)}

    def predict(self, images, batch_size=128, verbose=0):
        probs = np.zeros((len(images), 6), np.float32)
        for i, face in enumerate(images.astype(np.uint8)):
            probs[i, self.known.get(face.tobytes(), 0)] = 1
        return {"probabilities": probs}


@pytest.fixture
def faces():
    return load_faces(synthetic_records(5, SIX, 64, 0), SIX, 64, progress=False)[0]


def test_report_compares_each_shift_with_clean_accuracy(faces):
    model = robustness.Scored("exact", ExactMatch(faces), flip_tta=False)
    report = robustness.run_report([model], faces, ["blur", "loose"], [1, 5], log=lambda _: None)
    entry = report["models"]["exact"]
    assert entry["clean"] == 1.0
    share_class0 = float((faces.labels == 0).mean())  # every shifted face comes out as class 0
    for name in ("blur", "loose"):
        assert entry["shifts"][name]["accuracy"] == pytest.approx([share_class0, share_class0])
    assert entry["suite_mean"] == pytest.approx(share_class0)
    assert report["shifts"]["loose"]["levels"] == [0.9, 0.5]
    table = robustness.format_table(report)
    assert "clean accuracy 1.0000" in table and "loose" in table


def _entry(clean, shifts, **extra):
    entry = {"clean": clean, "flip_tta": False, "shifts": {k: dict(v) for k, v in shifts.items()}, **extra}
    robustness.summarise(entry)
    return entry


def test_table_compares_each_model_with_the_first_and_says_which_side_of_clean_a_crop_falls():
    shifts = {"blur": {"accuracy": [0.8, 0.6]},
              "detector-haar": {"accuracy": [0.9, 0.7], "clean_same_faces": [0.85, 0.85]}}
    report = {"n": 10, "severities": [1, 5], "shifts": {"blur": {}, "detector-haar": {"detected": [1.0, 0.5]}},
              "models": {"old": _entry(0.9, shifts),
                         "new": _entry(0.85, {"blur": {"accuracy": [0.84, 0.8]},
                                              "detector-haar": {"accuracy": [0.85, 0.83],
                                                                "clean_same_faces": [0.85, 0.85]}})}}
    table = robustness.format_table(report)
    # old: crops at 0.9 and 0.7 against 0.85 clean on the same faces: 5 points below on average
    assert "5.0 pts below clean on the same faces" in table
    # old: suite mean (0.7 + 0.8) / 2 = 0.75, cost 15 pts; new: (0.82 + 0.84) / 2 = 0.83, cost 2 pts
    assert "against old (shifts cost it 15.0 pts):" in table
    assert "new: clean -5.0 pts, suite mean +8.0 pts; shifts cost it 2.0 pts" in table
    assert "image shifts, mean" not in table  # one image shift: its own row already says it
    report["models"]["new"]["shifts"]["noise"] = {"accuracy": [0.9, None]}
    report["shifts"]["noise"] = {}
    robustness.summarise(report["models"]["new"])
    # blur (0.84, 0.8) and noise (0.9, -): by severity (0.87, 0.8); the rows' means 0.82 and 0.9: 0.86
    by_level, mean = robustness.severity_means(report["models"]["new"])["image shifts, mean"]
    assert by_level == pytest.approx([0.87, 0.8]) and mean == pytest.approx(0.86)
    assert "image shifts, mean      0.870    0.800    0.860" in robustness.format_table(report)
    better = {"detector-haar": {"accuracy": [0.9, 0.9], "clean_same_faces": [0.85, 0.85]}}
    report["models"] = {"only": _entry(0.9, better)}
    table = robustness.format_table(report)
    assert "5.0 pts above clean on the same faces" in table and "against" not in table


def test_detector_crops_of_a_real_face_pasted_into_scenes():
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    from fer_keras.detection import make_detector

    rgb = skimage_data.astronaut()
    face = cv2.cvtColor(rgb[58:168, 168:278], cv2.COLOR_RGB2GRAY)  # the astronaut's face (Haar: 98 px at 174, 64)
    images = np.stack([cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA)] * 3)[..., None]
    found, crops = robustness.detector_crops(images, make_detector("haar"), 200, 64, seed=0)
    assert sorted(found.tolist()) == [0, 1, 2] and crops.shape == (3, 64, 64, 1)
    # The crop is the face again, framed as the video client frames it.
    corr = np.corrcoef(crops[0].ravel().astype(float), images[0].ravel().astype(float))[0, 1]
    assert corr > 0.6
    frames = robustness.scene_frames(images, 60, seed=0)
    assert len(frames) == 1 and frames[0][0].shape == (480, 640, 3)  # small faces share one frame


def test_textured_scenes_put_faces_on_walls_fabric_and_foliage_and_detectors_still_cut_them():
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    from fer_keras.detection import make_detector

    assert robustness.scene_shift("textured-haar") == ("haar", "textured")
    assert robustness.scene_shift("detector-haar") == ("haar", "blurred-noise")
    assert robustness.scene_shift("blur") is None
    assert "textured-blazeface" in robustness.parse_shifts("all")
    face = cv2.cvtColor(skimage_data.astronaut()[58:168, 168:278], cv2.COLOR_RGB2GRAY)
    images = np.stack([cv2.resize(face, (64, 64), interpolation=cv2.INTER_AREA)] * 4)[..., None]
    smooth = robustness.scene_frames(images, 100, seed=0)
    textured = robustness.scene_frames(images, 100, seed=0, background="textured")
    assert [p for _, p in smooth] == [p for _, p in textured]  # the same places, another background

    def background_detail(frames):  # mean absolute difference of neighbouring pixels away from the faces
        frame, placed = frames[0]
        mask = np.ones(frame.shape[:2], bool)
        for _, (x, y, w, h) in placed:
            mask[y:y + h, x:x + w] = False
        gray = frame[..., 0].astype(float)
        return np.abs(np.diff(gray, axis=1))[mask[:, 1:]].mean()

    assert background_detail(textured) > 3 * background_detail(smooth)
    found, crops = robustness.detector_crops(images, make_detector("haar"), 200, 64, seed=0, background="textured")
    assert len(found) >= 3 and crops.shape[1:] == (64, 64, 1)
    blaze = make_detector("blazeface")
    _, boxed = robustness.detector_crops(images, blaze, 200, 64, seed=0, background="textured")
    _, aligned = robustness.detector_crops(images, blaze, 200, 64, seed=0, background="textured", align=True)
    assert boxed.shape == aligned.shape and not np.array_equal(boxed, aligned)  # keypoint framing, not the box
    photos = robustness.scene_frames(images, 290, seed=0, background="photo")
    assert len(photos) == 4 and all(f.shape == (640, 480, 3) and len(p) == 1 for f, p in photos)
    assert robustness.scene_shift("photo-mtcnn") == ("mtcnn", "photo")
    found, _ = robustness.detector_crops(images, make_detector("haar"), 290, 64, seed=0, background="photo")
    assert len(found) >= 3
    with pytest.raises(ValueError, match="unknown scene background"):
        robustness.scene_frames(images, 100, seed=0, background="plaid")


def test_detector_gap_is_clean_on_found_faces_minus_crop_accuracy():
    entry = {"clean": 0.9, "shifts": {"detector-haar": {"accuracy": [0.6, None], "clean_same_faces": [0.8, None]},
                                      "blur": {"accuracy": [0.7, 0.5]}}}
    robustness.summarise(entry)
    assert entry["shifts"]["detector-haar"]["gap"] == pytest.approx(0.2)
    assert entry["shift_means"] == {"detector-haar": pytest.approx(0.6), "blur": pytest.approx(0.6)}
    assert entry["suite_mean"] == pytest.approx(0.6)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from fer_keras.models import build_model

    path = tmp_path_factory.mktemp("m") / "m.keras"
    build_model("gimefive", width=1 / 16, input_size=32).save(path)
    return str(path)


def test_command_writes_table_json_and_figure(tmp_path, capsys, tiny_model):
    import shutil

    other = shutil.copy(tiny_model, tmp_path / "other.keras")
    code = robustness.main(["--model", tiny_model, str(other), "--image-size", "32", "--synthetic-per-class", "10",
                            "--shifts", "blur,rotation", "--severities", "2,4", "--out", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert report["n"] == 6 and report["severities"] == [2, 4]  # the synthetic test split: one face per class
    assert set(report["models"]) == {tiny_model, str(other)}
    assert set(report["shifts"]) == {"blur", "rotation"}
    assert len(report["models"][tiny_model]["shifts"]["blur"]["accuracy"]) == 2
    assert (tmp_path / "r" / "robustness.png").stat().st_size > 1000
    assert "mean over the shift suite" in out and "rotation" in out


def test_an_interrupted_report_resumes_from_its_finished_rows(tmp_path, capsys, tiny_model, monkeypatch):
    argv = ["--model", tiny_model, "--image-size", "32", "--synthetic-per-class", "10", "--shifts", "blur,rotation",
            "--severities", "2,4", "--out", str(tmp_path / "r")]
    real_shift = robustness.apply_shift

    def failing_on(name):
        def apply(images, shift, severity, seed):
            if shift == name:
                raise KeyboardInterrupt  # the session ends in this row
            return real_shift(images, shift, severity, seed)
        return apply

    monkeypatch.setattr(robustness, "apply_shift", failing_on("rotation"))
    with pytest.raises(KeyboardInterrupt):
        robustness.main(argv)
    partial = json.loads((tmp_path / "r" / robustness.PARTIAL).read_text())
    assert set(partial["report"]["shifts"]) == {"blur"} and not (tmp_path / "r" / "robustness.json").exists()
    # Run again: blur is not computed again (it would fail now), rotation is; the partial file goes.
    monkeypatch.setattr(robustness, "apply_shift", failing_on("blur"))
    assert robustness.main(argv) == 0
    assert "resuming" in capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert set(report["shifts"]) == {"blur", "rotation"}
    assert report["models"][tiny_model]["shifts"]["blur"] == partial["report"]["models"][tiny_model]["shifts"]["blur"]
    assert "suite_mean" in report["models"][tiny_model] and not (tmp_path / "r" / robustness.PARTIAL).exists()
    # Other settings (here the seed, which draws the shifts) never reuse an earlier run's rows.
    monkeypatch.setattr(robustness, "apply_shift", failing_on("rotation"))
    with pytest.raises(KeyboardInterrupt):
        robustness.main(argv)
    calls = []
    monkeypatch.setattr(robustness, "apply_shift", lambda *a: calls.append(a[1]) or real_shift(*a))
    assert robustness.main([*argv, "--seed", "1"]) == 0
    assert "starting afresh" in capsys.readouterr().err and calls.count("blur") == 2
    # An unreadable file (not a report) is no reason to stop: its rows are computed again.
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(robustness, "apply_shift", failing_on("rotation"))
        robustness.main(argv)
    (tmp_path / "r" / robustness.PARTIAL).write_text("{not json")
    monkeypatch.setattr(robustness, "apply_shift", real_shift)
    assert robustness.main(argv) == 0 and "starting afresh" in capsys.readouterr().err


def test_cross_source_is_evaluated_in_full(tmp_path, capsys, tiny_model, image_writer):
    for emotion, n in (("happy", 3), ("angry", 2), ("neutral", 2)):
        for i in range(n):
            image_writer(tmp_path / "posed" / emotion / f"{i}.png", seed=i)
    code = robustness.main(["--model", tiny_model, "--image-size", "32", "--synthetic-per-class", "5",
                            "--shifts", "jpeg", "--severities", "1", "--cross", f"folders={tmp_path / 'posed'}",
                            "--out", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr().err
    cross = json.loads((tmp_path / "r" / "robustness.json").read_text())["models"][tiny_model]["cross"]["folders"]
    assert cross["n"] == 5  # every happy and angry image; neutral is outside the six-class view


def test_cross_photos_are_cut_to_their_faces_first_and_the_faceless_counted(tmp_path, capsys, tiny_model):
    import cv2
    import skimage.data

    from fer_keras.data.textures import texture

    (tmp_path / "photos" / "happy").mkdir(parents=True)
    (tmp_path / "photos" / "angry").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "photos" / "happy" / "a.png"), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "photos" / "angry" / "wall.png"), texture("foliage", 480, 640, np.random.default_rng(1)))
    code = robustness.main(["--model", tiny_model, "--image-size", "32", "--synthetic-per-class", "5",
                            "--shifts", "jpeg", "--severities", "1", "--cross", f"folders={tmp_path / 'photos'}",
                            "--cross-detect", "--out", str(tmp_path / "r")])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert report["cross_detect"] == {"folders": {"images": 2, "no_face": 1}}
    assert report["models"][tiny_model]["cross"]["folders"]["n"] == 1


@pytest.mark.parametrize("argv,message", [
    (["--shifts", "blur,twirl"], "unknown shift(s) ['twirl']"),
    (["--severities", "0,3"], "each severity must be 1 to 5"),
    (["--severities", "x"], "expected integers"),
    (["--classes", "seven"], "the model(s) have the six-class view"),
    (["--data", "folders=EMPTY"], "no labelled images"),
    (["--data", "folders=NEUTRAL"], "no faces in folders="),
    (["--model", "TINY", "TINY"], "more than once"),
])
def test_bad_input_is_one_clear_error(tmp_path, capsys, tiny_model, image_writer, argv, message):
    (tmp_path / "empty" / "happy").mkdir(parents=True)
    image_writer(tmp_path / "neutral" / "neutral" / "0.png")  # no face of the model's six classes
    argv = [a.replace("EMPTY", str(tmp_path / "empty")).replace("NEUTRAL", str(tmp_path / "neutral")) for a in argv]
    argv = [tiny_model if a == "TINY" else a for a in argv]
    if "--model" not in argv:
        argv = ["--model", tiny_model, *argv]
    code = robustness.main(["--image-size", "32", "--synthetic-per-class", "5", *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
