"""benchmarks.detectors on a benchmark video's frames (--video), and its detector names."""

import json

import cv2
import numpy as np
import skimage.data

from benchmarks.detectors import main, make


def test_detector_names_choose_the_second_look():
    assert make("blazeface").second_look == 2.5 and make("blazeface").second_look_model == "back"
    assert make("blazeface-lookshort").second_look_model == "short"
    assert make("blazeface-look3.0").second_look == 3.0
    assert make("blazeface-once").second_look is None
    unverified = make("blazeface-unverified")  # BlazeFace alone, as before issue 28
    assert unverified.verifier is None and unverified.second_look is None


def test_video_frames_are_scored_against_their_truth(tmp_path, capsys):
    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut()[40:190, 150:290], cv2.COLOR_RGB2BGR), (150, 150))
    writer = cv2.VideoWriter(str(tmp_path / "test.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    truth = []
    for i in range(6):
        frame = np.full((480, 640, 3), 110, np.uint8)
        x = 100 + 20 * i
        frame[150:300, x:x + 150] = face
        writer.write(frame)
        truth.append([{"box": [x, 150, 150, 150], "label": 0, "shot": 0}])
    writer.release()
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    assert main(["--video", str(tmp_path), "--every", "2", "--detectors", "blazeface,blazeface-once"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(str(tmp_path))]
    assert [(r[1], r[2]) for r in rows] == [("blazeface", "3"), ("blazeface-once", "3")]
    assert all(float(r[3]) == 1.0 and float(r[4]) == 0.0 for r in rows), rows
    # BlazeFace's mean time by part, per frame: the second look's is 0 where there is none.
    parts = [dict(zip(r[8::2], (float(v.rstrip(",")) for v in r[9::2]))) for r in rows]
    assert [set(p) for p in parts] == [{"blazeface", "verify", "second-look"}] * 2, rows
    assert all(p["blazeface"] > 0 and p["verify"] > 0 for p in parts), rows
    assert parts[0]["second-look"] > 0 and parts[1]["second-look"] == 0, rows
    assert main(["--video", str(tmp_path / "nowhere")]) == 2
    assert "holding test.mp4 and truth.json (missing in:" in capsys.readouterr().err


def test_a_malformed_detector_name_gets_one_clear_error(tmp_path, capsys):
    for name in ("blazeface-lookx", "blazeface-look0.5", "nosuchdetector"):
        assert main(["--detectors", name, "--fer2013", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    main(["--detectors", "blazeface-lookx", "--fer2013", str(tmp_path)])
    assert "'lookx'" in capsys.readouterr().err
