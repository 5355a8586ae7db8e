"""The video benchmark's scoring: what counts as a found face."""

from pathlib import Path

import pytest

from benchmarks.video_benchmark import score

CLASSES = ["happiness", "surprise", "sadness", "anger", "disgust", "fear"]


def _face(box, crop, emotion):
    return {"box": list(box), "crop": list(crop), "smoothed": {c: float(c == emotion) for c in CLASSES}}


def test_iou_and_centre_criteria():
    truth = [[{"box": [100, 100, 100, 100], "label": 0}], [{"box": [100, 100, 100, 100], "label": 1}], []]
    records = [
        # A tight detector box (IoU 0.49) whose square crop covers the face well.
        {"faces": [_face((115, 115, 70, 70), (105, 105, 90, 90), "happiness")]},
        # A crop twice the face's side, centred on it: found, but IoU 0.25.
        {"faces": [_face((70, 70, 160, 160), (50, 50, 200, 201), "fear")]},
        {"faces": [_face((0, 0, 10, 10), (0, 0, 10, 10), "fear")]},  # a false face where there is none
    ]
    by_box = score(truth, records, CLASSES, least_iou=0.5)
    assert by_box["ground_truth_faces"] == 2 and by_box["recall"] == 0.0
    assert score(truth, records, CLASSES)["recall"] == 0.5  # at the default IoU 0.4 the tight box counts
    by_crop = score(truth, records, CLASSES, region="crop", least_iou=0.5)
    assert by_crop["recall"] == 0.5 and by_crop["accuracy_of_found"] == 1.0
    centred = score(truth, records, CLASSES, region="crop", criterion="centre")
    assert centred["recall"] == 0.5  # 201 px is more than twice 100 px
    records[1]["faces"][0]["crop"] = [60, 60, 180, 180]
    centred = score(truth, records, CLASSES, region="crop", criterion="centre")
    assert centred["recall"] == 1.0 and centred["accuracy_of_found"] == 0.5


def test_one_region_matches_one_face():
    truth = [[{"box": [0, 0, 100, 100], "label": 0}, {"box": [10, 10, 100, 100], "label": 0}]]
    records = [{"faces": [_face((0, 0, 100, 100), (0, 0, 100, 100), "happiness")]}]
    assert score(truth, records, CLASSES)["recall"] == 0.5


def test_shots_false_boxes_and_tracks_across_cuts():
    def face(box, track, emotion="happiness"):
        return {**_face(box, box, emotion), "track": track}

    a, b = [0, 0, 100, 100], [300, 0, 100, 100]
    truth = [[{"box": a, "label": 0, "shot": 0}]] * 2 + [[{"box": b, "label": 1, "shot": 1}]] * 12
    records = ([{"faces": [face(a, 1)]}] * 2
               # After the cut the old track coasts on over empty background for two frames, then a new track.
               + [{"faces": [face(a, 1), face(b, 2, "surprise")]}] * 2 + [{"faces": [face(b, 2, "surprise")]}] * 10)
    result = score(truth, records, CLASSES)
    assert result["recall"] == 1.0 and result["accuracy_of_found"] == 1.0
    assert result["false_boxes_per_frame"] == 2 / 14
    assert result["false_boxes_per_frame_first_10_of_shot"] == 2 / 12  # frames 0-1 of shot 0, 0-9 of shot 1
    assert result["tracks"] == 2 and result["tracks_across_cuts"] == 1 and result["tracks_on_several_faces"] == 0


def test_clean_accuracy_is_taken_over_the_same_found_faces():
    """With each source image's own prediction, the score compares the pipeline's crops with the dataset's
    crops of exactly the faces it found (a missed face counts in neither)."""
    a = {"box": [0, 0, 100, 100], "label": 0, "source": "test/happy/a.jpg"}
    b = {"box": [300, 0, 100, 100], "label": 1, "source": "test/surprise/b.jpg"}
    truth = [[a, b], [a, b], [a, b]]
    records = [
        {"faces": [_face(a["box"], a["box"], "sadness"), _face(b["box"], b["box"], "surprise")]},
        {"faces": [_face(a["box"], a["box"], "happiness")]},  # b missed
        {"faces": [_face(a["box"], a["box"], "happiness"), _face(b["box"], b["box"], "fear")]},
    ]
    clean = {"test/happy/a.jpg": "happiness", "test/surprise/b.jpg": "fear"}
    result = score(truth, records, CLASSES, clean=clean)
    assert result["recall"] == 5 / 6 and result["accuracy_of_found"] == 3 / 5
    assert result["found_with_source"] == 5 and result["clean_accuracy_of_found"] == 3 / 5  # a right 3x, b wrong 2x
    # per true class: found instances, right in the video, right on their own images
    assert result["per_class"] == {"happiness": [3, 2, 3], "surprise": [2, 1, 0]}
    # a's first frame went wrong in the video (said sadness); b's first was right though its own image says fear
    assert result["crop_changes"] == {"lost": {"happiness->sadness": 1}, "won": {"surprise->fear": 1}}
    assert "clean_accuracy_of_found" not in score(truth, records, CLASSES)


def test_clean_predictions_classify_each_source_image_once(tmp_path):
    import cv2
    import numpy as np

    from benchmarks.video_benchmark import clean_predictions

    (tmp_path / "test" / "happy").mkdir(parents=True)
    for name, value in (("a.jpg", 40), ("b.jpg", 200)):
        cv2.imwrite(str(tmp_path / "test" / "happy" / name), np.full((48, 48), value, np.uint8))

    class Client:
        face_size = 64
        seen = []

        def predict(self, faces):
            self.seen.append(faces.shape)
            labels = ["happiness" if f.mean() > 100 else "fear" for f in faces]
            return type("P", (), {"labels": labels})()

    a = {"box": [0, 0, 10, 10], "label": 0, "source": "test/happy/a.jpg"}
    b = {"box": [20, 0, 10, 10], "label": 0, "source": "test/happy/b.jpg"}
    client = Client()
    assert clean_predictions(client, tmp_path, [[a, b], [a], [b]]) == {"test/happy/a.jpg": "fear",
                                                                       "test/happy/b.jpg": "happiness"}
    assert client.seen == [(2, 64, 64, 1)]  # each image once, at the model's size
    assert clean_predictions(client, tmp_path, [[{"box": [0, 0, 1, 1], "label": 0}]]) is None  # no sources
    missing = {**a, "source": "test/happy/nothere.jpg"}
    assert clean_predictions(client, tmp_path, [[a, missing]]) is None
    (tmp_path / "test" / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    assert clean_predictions(client, tmp_path, [[a, {**a, "source": "test/happy/broken.jpg"}]]) is None


def test_blazeface_options_with_another_detector_are_one_clear_error(capsys):
    from benchmarks.video_benchmark import main

    assert main(["--detector", "mtcnn", "--verify-box-only", "--no-verify"]) == 2
    err = capsys.readouterr().err
    assert "--no-verify, --verify-box-only change BlazeFace" in err and "--detector mtcnn" in err
    assert main(["--detector", "haar", "--second-look-model", "short"]) == 2
    assert "--second-look-model change BlazeFace" in capsys.readouterr().err
    assert main(["--second-look-model", "short", "--no-second-look"]) == 2
    assert "does not go with --no-verify or --no-second-look" in capsys.readouterr().err


def test_the_crop_cost_interval_resamples_whole_faces_and_runs_pool(tmp_path, capsys):
    import json

    from benchmarks.video_benchmark import crop_cost_interval, main

    # 100 faces of 10 frames each: 20 right on their own image and wrong in the video, the rest agreeing.
    faces = [[0, 10, 10]] * 20 + [[10, 10, 10]] * 50 + [[0, 0, 10]] * 30
    low, high = crop_cost_interval(faces)
    assert low < 20 < high and 10 < low and high < 30  # the cost is 20 points; faces, not frames, are the sample
    frames_as_faces = [[0, 1, 1]] * 200 + [[1, 1, 1]] * 500 + [[0, 0, 1]] * 300  # the same counts, 10x the faces
    narrow = crop_cost_interval(frames_as_faces)
    assert narrow[1] - narrow[0] < (high - low) / 2
    for name, rows in (("a", faces[:50]), ("b", faces[50:])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "benchmark.json").write_text(json.dumps({"faces_paired": rows}))
    assert main(["--pool", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    said = capsys.readouterr().out
    assert "2 runs, 100 faces, 1000 found instances" in said and "the crops cost 20.0 points" in said
    assert "per class" not in said  # the runs recorded no per-class figures
    for name, per_class in (("a", {"fear": [10, 4, 8]}), ("b", {"fear": [10, 6, 8], "anger": [5, 5, 5]})):
        (tmp_path / name / "benchmark.json").write_text(json.dumps({"faces_paired": faces, "per_class": per_class}))
    assert main(["--pool", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    said = capsys.readouterr().out
    assert "fear 20: 0.500 / 0.800, anger 5: 1.000 / 1.000" in said and "the crops' changes" not in said
    for name, lost in (("a", {"anger->neutral": 3, "fear->sadness": 1}), ("b", {"anger->neutral": 2})):
        (tmp_path / name / "benchmark.json").write_text(json.dumps(
            {"faces_paired": faces, "crop_changes": {"lost": lost, "won": {"neutral->anger": 1}}}))
    assert main(["--pool", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert ("right on their own image, wrong in the video 6 (anger as neutral 5, fear as sadness 1); wrong on their "
            "own image, right in the video 2 (neutral as anger 2)") in capsys.readouterr().out


def test_soak_latency_per_minute():
    from benchmarks.soak import per_minute

    done = [(5.0, 10.0), (30.0, 20.0), (59.9, 30.0), (61.0, 100.0), (130.0, 7.0)]
    rows = per_minute(done)
    assert [r["minute"] for r in rows] == [1, 2, 3] and [r["requests"] for r in rows] == [3, 1, 1]
    assert rows[0]["p50_ms"] == 20.0 and rows[1]["p99_ms"] == 100.0


def _ferplus_test_folder(root):
    """A FER+ test folder of six faces: one per listed emotion (votes in label.csv's column order)."""
    import cv2
    import numpy as np

    folder = root / "FER2013Test"
    folder.mkdir(parents=True)
    rows = []
    # columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    for k, column in enumerate((0, 1, 2, 6, 7, 0)):
        votes = [0] * 10
        votes[column] = 8
        votes[(column + 1) % 8] = 2
        cv2.imwrite(str(folder / f"fer{k:07d}.png"), np.full((48, 48), 30 * k, np.uint8))
        rows.append(f'fer{k:07d}.png,"(0, 0, 48, 48)",' + ",".join(map(str, votes)))
    (folder / "label.csv").write_text("\n".join(rows) + "\n")


def test_a_seven_class_video_draws_ferplus_faces_under_their_majority_label(tmp_path):
    import cv2

    from benchmarks.video_benchmark import build_shots, face_records

    _ferplus_test_folder(tmp_path / "ferplus")
    records = face_records(tmp_path / "ferplus", "seven")
    # neutral is class 6 of the seven-class view; the contempt face is outside it
    assert sorted(label for _, label in records) == [0, 1, 5, 6, 6]
    truth = build_shots(tmp_path / "ferplus", tmp_path / "v.mp4", 1.0, 15, seed=4, background="textured",
                        classes="seven")
    assert len(truth) == 30 and cv2.VideoCapture(str(tmp_path / "v.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 30
    pasted = {(g["source"], g["label"]) for gt in truth for g in gt}
    assert pasted and pasted <= {(f"FER2013Test/{Path(p).name}", label) for p, label in records}


def test_a_video_reused_under_another_class_view_is_one_clear_error(tmp_path, capsys):
    import json

    from benchmarks.video_benchmark import main

    (tmp_path / "video.json").write_text(json.dumps({"classes": "seven"}))
    assert main(["--video", str(tmp_path), "--classes", "six"]) == 2
    assert f"the video in {tmp_path} was built with --classes seven, not six" in capsys.readouterr().err
    assert main(["--video", str(tmp_path), "--ferplus", str(tmp_path / "none")]) == 2  # its own view: FER+ faces
    assert f"FER+ not found at {tmp_path / 'none'}" in capsys.readouterr().err


def test_a_served_model_of_another_class_view_is_one_clear_error(tmp_path, capsys, monkeypatch):
    import json

    import clients.client
    import serving.local.embedded
    from benchmarks.video_benchmark import main

    stopped = []

    class Server:
        address = "localhost:1"

        def stop(self, grace=None):
            stopped.append(grace)

    class SixClassClient:
        classes = tuple(CLASSES)

        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr(serving.local.embedded, "start_embedded_server", lambda *args, **kwargs: Server())
    monkeypatch.setattr(clients.client, "EmotionClient", SixClassClient)
    (tmp_path / "ferplus" / "FER2013Test").mkdir(parents=True)
    (tmp_path / "video.json").write_text(json.dumps({"classes": "seven"}))
    (tmp_path / "truth.json").write_text("[]")
    code = main(["--video", str(tmp_path), "--ferplus", str(tmp_path / "ferplus"), "--model-base-path", "models/x",
                 "--out", str(tmp_path / "out")])
    assert code == 2 and stopped  # the server it started is stopped
    assert "labelled in the seven-class view, the model classifies happiness, surprise" in capsys.readouterr().err


def test_a_damaged_face_image_is_one_clear_error_naming_it(tmp_path, capsys):
    from benchmarks.video_benchmark import main

    _ferplus_test_folder(tmp_path / "ferplus")
    for image in (tmp_path / "ferplus" / "FER2013Test").glob("*.png"):
        image.write_bytes(b"not a png")  # every face damaged: whichever the seed draws
    args = ["--classes", "seven", "--ferplus", str(tmp_path / "ferplus"), "--seconds", "1",
            "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read the face image ") and "FER2013Test/fer" in err
    assert err.count("\n") == 1  # one line, no traceback
    assert main(args + ["--cut-every", "15", "--background", "textured"]) == 2
    assert "cannot read the face image" in capsys.readouterr().err


def test_smoothing_and_the_other_tuned_settings_reach_the_analyzer(tmp_path, monkeypatch, capsys):
    import json

    import clients.analyzer
    import clients.client
    import serving.local.embedded
    from benchmarks.video_benchmark import main
    from fer_keras.data.taxonomy import get_taxonomy

    class Server:
        address = "localhost:1"

        def stop(self, grace=None):
            pass

    class SevenClassClient:
        classes = get_taxonomy("seven").classes

        def __init__(self, *args, **kwargs):
            pass

    seen = {}

    class Configured(Exception):
        pass

    def config(**kwargs):
        seen.update(kwargs)
        raise Configured

    monkeypatch.setattr(serving.local.embedded, "start_embedded_server", lambda *args, **kwargs: Server())
    monkeypatch.setattr(clients.client, "EmotionClient", SevenClassClient)
    monkeypatch.setattr(clients.analyzer, "AnalyzerConfig", config)
    (tmp_path / "ferplus" / "FER2013Test").mkdir(parents=True)
    (tmp_path / "video.json").write_text(json.dumps({"classes": "seven"}))
    (tmp_path / "truth.json").write_text("[]")
    with pytest.raises(Configured):
        main(["--video", str(tmp_path), "--ferplus", str(tmp_path / "ferplus"), "--model-base-path", "models/x",
              "--smoothing", "0.3", "--margin", "0.1", "--out", str(tmp_path / "out")])
    assert seen["smoothing"] == 0.3 and seen["margin"] == 0.1 and "box_smoothing" not in seen  # unset: the default
    monkeypatch.undo()  # the real settings: a value out of range is one clear error, not a traceback
    monkeypatch.setattr(serving.local.embedded, "start_embedded_server", lambda *args, **kwargs: Server())
    monkeypatch.setattr(clients.client, "EmotionClient", SevenClassClient)
    assert main(["--video", str(tmp_path), "--ferplus", str(tmp_path / "ferplus"), "--model-base-path", "models/x",
                 "--smoothing", "2", "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "error: smoothing must be in (0, 1]; got 2.0\n"
