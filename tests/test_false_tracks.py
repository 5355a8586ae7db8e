"""benchmarks.false_tracks: a video benchmark run's false boxes by track."""

import json

import cv2
import numpy as np

from benchmarks.false_tracks import false_tracks, main


def _run(tmp_path):
    # face A (truth 100 px) tracked well, then drawn twice its size on frame 2; track 2 sits on face B at half
    # its side all along (never matched); track 3 is a box over nothing on frame 1.
    truth = [[{"box": [10, 10, 100, 100], "label": 0, "shot": 0}, {"box": [300, 200, 120, 120], "label": 1, "shot": 0}]
             for _ in range(4)]
    records = []
    for f in range(4):
        faces = [{"track": 1, "box": [10, 10, 200, 200] if f == 2 else [12, 12, 98, 98]},
                 {"track": 2, "box": [330, 230, 60, 60]}]
        if f == 1:
            faces.append({"track": 3, "box": [500, 20, 50, 50]})
        records.append({"frame": f, "faces": faces})
    video, run = tmp_path / "video", tmp_path / "run"
    video.mkdir()
    run.mkdir()
    (video / "truth.json").write_text(json.dumps(truth))
    (run / "frames.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    writer = cv2.VideoWriter(str(video / "test.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 480))
    for _ in range(4):
        writer.write(np.full((480, 640, 3), 128, np.uint8))
    writer.release()
    return truth, records, video, run


def test_false_boxes_are_told_apart_by_their_track(tmp_path):
    truth, records, _, _ = _run(tmp_path)
    found = false_tracks(truth, records)
    assert found["frames"] == 4 and len(found["false"]) == 6  # track 1 once, track 2 four times, track 3 once
    assert found["kinds"] == {"matched before": 1, "matched only after": 0, "never matched": 5}
    assert sorted(found["never"]) == [2, 3] and len(found["never"][2]) == 4
    sides = sorted((side, touching) for _, _, side, touching in found["false"])
    assert (200, 100) in sides and (60, 120) in sides and (50, 0) in sides


def test_cli_prints_counts_and_draws_the_never_matched_tracks(tmp_path, capsys):
    _, _, video, run = _run(tmp_path)
    out = tmp_path / "never.png"
    assert main(["--run", str(run), "--video", str(video), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "6 false boxes in 4 frames" in printed and "never matched: 5" in printed
    assert "2 tracks drawn" in printed
    picture = cv2.imread(str(out))
    assert picture.shape[0] == 240 and picture.shape[1] == 3 * 320
    assert (picture[..., 2] > 200).any()  # the red boxes
    assert main(["--run", str(tmp_path / "nowhere"), "--video", str(video)]) == 2
    assert "not found" in capsys.readouterr().err
