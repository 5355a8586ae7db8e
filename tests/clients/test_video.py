"""The video analyzer end to end on short generated videos, against the local server."""

import json

import cv2
import numpy as np
import pytest
import skimage.data

from clients.analyzer import AnalyzerConfig, VideoAnalyzer
from clients.client import EmotionClient
from clients.sources import open_source
from clients.video import main as video_main
from fer_keras.data.taxonomy import SIX


def write_video(path, frames=24, size=(320, 240)):
    """A face photo sliding across the frame (a real face MTCNN and Haar find)."""
    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (200, 200))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 70, np.uint8)
        x = 10 + (2 * i) % 100
        frame[20:220, x:x + 200] = face
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4")


def _frames(path):
    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    return n


def test_whole_pipeline_writes_video_jsonl_summary_and_plot(shared_server, video, tmp_path):
    out = tmp_path / "out"
    code = video_main([str(video), "--server", shared_server.address, "--out-dir", str(out), "--detect-every", "4",
                       "--explain-every", "6", "--batch-frames", "4", "--track-plots"])
    assert code == 0
    assert _frames(out / "annotated.mp4") == 24
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(24))
    assert all(len(r["faces"]) == 1 for r in records)  # the face is found and classified in every frame
    face = records[10]["faces"][0]
    assert face["track"] == 1 and set(face["landmarks"]) >= {"left_eye", "right_eye"}
    from fer_keras.detection import Face, classified_region, crop_region

    # the square that was classified: framed from the keypoints (the default), not the box's square
    detected = Face(tuple(face["box"]), face["score"], {k: tuple(v) for k, v in face["landmarks"].items()})
    assert face["crop"] == list(classified_region(detected, align=True)) != list(crop_region(tuple(face["box"])))
    assert abs(sum(face["smoothed"].values()) - 1) < 1e-3
    assert face["emotion"] == max(face["smoothed"], key=face["smoothed"].get)
    # each refreshed heatmap says where its mass lies on the face (from the keypoints in the crop)
    refreshed = [f for r in records for f in r["faces"] if "explanation" in f]
    assert len(refreshed) >= 3
    # asked for beside the next frames' detection, with several groups of frames in flight: still once per
    # --explain-every frames for a track, never twice for one stale map
    when = [r["frame"] for r in records for f in r["faces"] if "explanation" in f and f["track"] == 1]
    assert len(when) >= 3 and all(b - a >= 6 for a, b in zip(when, when[1:])), when
    assert all(set(f["explanation"]["regions"]) == {"eyes", "nose", "mouth", "elsewhere"} for f in refreshed)
    assert all(abs(sum(f["explanation"]["regions"].values()) - 1) < 1e-3 for f in refreshed)
    assert all(f["explanation"]["regions_from"] == "keypoints" and f["explanation"]["method"] == "gradact-fused"
               for f in refreshed)
    summary = json.loads((out / "summary.json").read_text())
    regions = summary["explanation_regions"]
    assert regions["method"] == "gradact-fused"
    assert sum(r["maps"] for r in regions["per_emotion"].values()) == len(refreshed)
    assert summary["frames"] == 24 and summary["faces_classified"] == 24
    assert set(summary["stage_ms_per_frame"]) == {"decode", "cuts", "detect", "crop", "classify", "explain", "annotate",
                                                  "encode"}
    detect = summary["detect_ms_per_frame"]  # BlazeFace's own split of its stage
    assert set(detect) == {"blazeface", "verify", "second_look"} and all(v >= 0 for v in detect.values())
    assert sum(detect.values()) <= summary["stage_ms_per_frame"]["detect"] + 0.5
    assert summary["tracks"]["1"]["frames"] == 24 and summary["cuts"] == []
    assert cv2.imread(str(out / "summary.png")) is not None and summary["figure"] == str(out / "summary.png")
    assert (out / "timeline_track1.png").is_file() and cv2.imread(str(out / "timeline_track1.png")) is not None


def write_shots(path, shots, size=(320, 240)):
    """A video of shots: each ``(frames, background grey level, face x or None, face present from..to)``."""
    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (160, 160))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for frames, level, x, (first, last) in shots:
        for i in range(frames):
            frame = np.full((size[1], size[0], 3), level, np.uint8)
            if x is not None and first <= i < last:
                frame[40:200, x + i:x + i + 160] = face
            writer.write(frame)
    writer.release()
    return path


def _records(out):
    return [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]


def test_tracks_end_at_a_cut_and_the_new_shot_is_searched_at_once(shared_server, tmp_path):
    video = write_shots(tmp_path / "cuts.mp4", [(12, 60, 10, (0, 12)), (12, 170, 120, (0, 12))])
    out = tmp_path / "out"
    assert video_main([str(video), "--server", shared_server.address, "--out-dir", str(out), "--detect-every", "5",
                       "--batch-frames", "4", "--no-video"]) == 0
    records = _records(out)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cuts"] == [12]
    tracks = [{f["track"] for f in r["faces"]} for r in records]
    assert tracks[:12] == [{1}] * 12
    # Frame 12 is not a multiple of 5, yet the new shot's face is found and classified there, on a new track.
    assert tracks[12:] == [{2}] * 12
    assert summary["tracks"]["1"]["last_frame"] == 11 and summary["tracks"]["2"]["first_frame"] == 12


def test_a_face_that_leaves_is_not_drawn_after_the_next_detection(shared_server, tmp_path):
    # The face is there for frames 3-13 of one 24-frame shot. Its sudden arrival and departure on a flat
    # background may count as cuts (then it is searched for at once); either way it is found by frame 5
    # and drawn in no frame after the detection round of frame 15.
    video = write_shots(tmp_path / "leave.mp4", [(24, 60, 10, (3, 14))])
    out = tmp_path / "out"
    assert video_main([str(video), "--server", shared_server.address, "--out-dir", str(out), "--detect-every", "5",
                       "--explain", "none", "--no-video"]) == 0
    counts = [len(r["faces"]) for r in _records(out)]
    assert counts[:3] == [0] * 3 and counts[5:14] == [1] * 9 and counts[15:] == [0] * 9


def test_haar_without_explanations_and_an_image_folder(shared_server, video, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    capture = cv2.VideoCapture(str(video))
    for i in range(6):
        ok, frame = capture.read()
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    (folder / "zz_broken.png").write_bytes(b"broken")
    out = tmp_path / "out"
    assert video_main([str(folder), "--server", shared_server.address, "--out-dir", str(out), "--detector", "haar",
                       "--explain", "none", "--no-video"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 6 and summary["unreadable_frames"] == [str(folder / "zz_broken.png")]
    assert not (out / "annotated.mp4").exists()


def test_limit_stops_after_that_many_frames(shared_server, video, tmp_path):
    out = tmp_path / "out"
    assert video_main([str(video), "--server", shared_server.address, "--out-dir", str(out), "--limit", "5",
                       "--detector", "haar", "--explain", "none", "--batch-frames", "3"]) == 0
    assert [json.loads(line)["frame"] for line in (out / "frames.jsonl").read_text().splitlines()] == [0, 1, 2, 3, 4]
    assert _frames(out / "annotated.mp4") == 5


def test_unreadable_inputs_give_one_clear_error(shared_server, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, message in (
        (bad, "cannot read"),
        (empty, "holds no images"),
        (tmp_path / "missing.mp4", "does not exist"),
    ):
        assert video_main([str(path), "--server", shared_server.address, "--out-dir", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


@pytest.mark.timeout(120)
def test_a_sink_that_fails_stops_the_run_with_one_error_and_keeps_what_was_written(shared_server, video, tmp_path,
                                                                                  monkeypatch, capsys):
    import clients.analyzer

    class FullDisk:
        """An annotated-video sink whose disk fills after 5 frames."""

        def __init__(self, path, fps):
            self.written = 0

        def write(self, frame):
            if self.written == 5:
                raise OSError(28, "No space left on device")
            self.written += 1

        def close(self):
            pass

    monkeypatch.setattr(clients.analyzer, "VideoSink", FullDisk)
    out = tmp_path / "out"
    code = video_main([str(video), "--server", shared_server.address, "--out-dir", str(out), "--explain", "none",
                       "--batch-frames", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "writing the annotated video failed" in err and "No space left" in err
    assert "Traceback" not in err
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert 5 <= len(records) < 24 and [r["frame"] for r in records] == list(range(len(records)))
    # with a queue of 2 between the stages, a writer that died silently left the analysis waiting for ever
    analyzer = VideoAnalyzer(EmotionClient(shared_server.address), AnalyzerConfig(queue_size=2, batch_frames=2,
                                                                           explain="none"))
    with pytest.raises(clients.analyzer.SinkError, match="No space left"):
        analyzer.run(open_source(str(video)), video_out=tmp_path / "x.mp4", jsonl=tmp_path / "x.jsonl",
                     progress=False)


def test_a_crash_keeps_every_frame_already_written(shared_server, video, tmp_path):
    calls = []

    def failing_explainer(crops):
        calls.append(len(crops))
        if len(calls) == 2:
            raise RuntimeError("explainer died")
        return np.zeros((len(crops), 4, 4), np.float32)

    client = EmotionClient(shared_server.address)
    analyzer = VideoAnalyzer(client, AnalyzerConfig(batch_frames=4, explain_every=1, max_in_flight=1),
                             explainer=failing_explainer)
    jsonl = tmp_path / "frames.jsonl"
    with pytest.raises(RuntimeError, match="explainer died"):
        analyzer.run(open_source(str(video)), jsonl=jsonl, progress=False)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 3]


def test_a_server_that_stays_down_marks_its_frames_and_resume_finishes_the_video(server, exported, tmp_path,
                                                                                   monkeypatch, capsys):
    from serving.config import single_model_config
    from serving.local.server import LocalServer

    video, out = write_video(tmp_path / "long.mp4", frames=40), tmp_path / "out"
    calls, predict_async = [], EmotionClient.predict_async

    def server_gone_at_the_third_call(self, faces):
        calls.append(len(faces))
        if len(calls) == 3:
            server.stop(grace=0)  # gone for longer than the client's retries
        return predict_async(self, faces)

    monkeypatch.setattr(EmotionClient, "predict_async", server_gone_at_the_third_call)
    flags = ["--out-dir", str(out), "--batch-frames", "4", "--max-in-flight", "1", "--explain", "none",
             "--detector", "haar", "--retries", "1", "--timeout", "2"]
    assert video_main([str(video), "--server", server.address, *flags]) == 2
    error = capsys.readouterr().err
    (line,) = [line for line in error.splitlines() if "error: " in line and "Serving" in line]  # one error
    assert "unreachable" in line and "the frames from 8 on are not classified" in line and "--resume" in line
    records = _records(out)
    assert [r["frame"] for r in records] == list(range(12))  # two groups classified, the third marked
    assert all(r.get("classified", True) and r["faces"] for r in records[:8])
    assert all(r["classified"] is False and "unreachable" in r["error"] and not r["faces"] for r in records[8:])
    tracks_before = {f["track"] for r in records[:8] for f in r["faces"]}

    monkeypatch.setattr(EmotionClient, "predict_async", predict_async)
    back = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0.2).start()
    try:
        assert back.registry.wait_until_available("gimefive", 60)
        assert video_main([str(video), "--server", back.address, *flags, "--resume"]) == 0
    finally:
        back.stop(grace=0.5)
    assert "resumed at frame 8" in capsys.readouterr().out
    records = _records(out)
    assert [r["frame"] for r in records] == list(range(40))  # every frame once, in order, none redone twice
    assert all(r.get("classified", True) and r["faces"] for r in records)
    assert min(f["track"] for r in records[8:] for f in r["faces"]) > max(tracks_before)  # numbered on
    assert _frames(out / "annotated.from-8.mp4") == 32
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == 8


def test_resume_keeps_the_classified_frames_in_order_and_drops_the_rest(tmp_path):
    from clients.analyzer import resume_point

    jsonl = tmp_path / "frames.jsonl"
    assert resume_point(jsonl) == (0, 0)
    rows = [{"frame": 0, "faces": [{"track": 2}]}, {"frame": 1, "faces": [{"track": 5}]},
            {"frame": 2, "classified": False, "faces": []}, {"frame": 3, "faces": [{"track": 9}]}]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert resume_point(jsonl) == (2, 5)
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + '{"frame": 2, "fa')  # cut short by a crash
    assert resume_point(jsonl) == (2, 5)
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in [rows[0], rows[3]]))  # a frame missing: stop there
    assert resume_point(jsonl) == (1, 2)


def test_config_validation():
    with pytest.raises(ValueError, match="at least 1"):
        AnalyzerConfig(detect_every=0)
    with pytest.raises(ValueError, match="smoothing"):
        AnalyzerConfig(smoothing=0)


def test_with_no_server_and_no_model_the_shipped_model_is_served(video, tmp_path, monkeypatch):
    monkeypatch.setenv("FER_KERAS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert video_main([str(video), "--out-dir", str(out), "--limit", "6", "--explain", "none", "--no-video"]) == 0
    assert (tmp_path / "cache" / "serving" / "gimefive-fer2013" / "1" / "saved_model.pb").is_file()
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(len(r["faces"]) == 1 for r in records)
    assert set(records[0]["faces"][0]["probabilities"]) == set(SIX.classes)


def test_the_command_prints_no_native_tensorflow_lines(shared_server, video, tmp_path):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "clients.video", str(video), "--server", shared_server.address,
                          "--out-dir", str(tmp_path / "o"), "--limit", "4", "--explain", "none", "--no-video"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    noise = [line for line in out.stderr.splitlines() if line[:5] in ("I0000", "W0000", "E0000") or "absl::" in line]
    assert noise == []
    assert "4 frames" in out.stdout


def _damaged(tmp_path, kind):
    """An mp4 with 4 kB zeroed a third of the way in, or an AVI cut in half (90 frames each)."""
    path = tmp_path / ("clip.mp4" if kind == "mp4" else "clip.avi")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*("mp4v" if kind == "mp4" else "MJPG")), 30, (160, 120))
    rng = np.random.default_rng(0)
    for i in range(90):
        frame = np.full((120, 160, 3), 40 + i, np.uint8)
        frame[30:90, i % 90:i % 90 + 60] = rng.integers(0, 255, (60, 60, 3))
        writer.write(frame)
    writer.release()
    data = bytearray(path.read_bytes())
    if kind == "mp4":
        data[len(data) // 3:len(data) // 3 + 4000] = bytes(4000)
    else:
        data = data[:len(data) // 2]
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind,decoded", [("mp4", 89), ("avi", 45)])
def test_damaged_videos_are_read_past_the_damage_and_reported(shared_server, tmp_path, capsys, kind, decoded):
    out = tmp_path / "out"
    assert video_main([str(_damaged(tmp_path, kind)), "--server", shared_server.address, "--out-dir", str(out),
                       "--explain", "none", "--no-video"]) == 0
    captured = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == decoded and summary["frames_expected"] == 90
    assert len(summary["unreadable_frames"]) == 90 - decoded
    assert len(_records(out)) == decoded
    assert f"warning: {90 - decoded} unreadable frame(s) skipped" in captured.err


def test_portrait_and_4k_frames(shared_server, tmp_path):
    face = cv2.resize(cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR), (300, 300))
    for name, (w, h), side in (("portrait", (270, 480), 200), ("uhd", (3840, 2160), 900)):
        path = tmp_path / f"{name}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
        for _ in range(3):
            frame = np.full((h, w, 3), 90, np.uint8)
            frame[100:100 + side, 20:20 + side] = cv2.resize(face, (side, side))
            writer.write(frame)
        writer.release()
        out = tmp_path / name
        assert video_main([str(path), "--server", shared_server.address, "--out-dir", str(out),
                           "--explain", "none"]) == 0
        # Verified by O-Net, the face is shown from the first frame: no wait for a second detection.
        assert [len(r["faces"]) for r in _records(out)] == [1, 1, 1], name
        x, y, w, h = _records(out)[1]["faces"][0]["box"]
        # The astronaut's face: about 0.44 of the photo across and 0.22 down, a fifth of its side.
        assert abs(x + w / 2 - (20 + 0.44 * side)) < side / 10 and abs(y + h / 2 - (100 + 0.22 * side)) < side / 10


def test_a_video_with_no_faces_gives_an_empty_report(shared_server, tmp_path):
    video = write_shots(tmp_path / "empty.mp4", [(10, 80, None, (0, 0))])
    out = tmp_path / "out"
    assert video_main([str(video), "--server", shared_server.address, "--out-dir", str(out), "--no-video"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 10 and summary["tracks"] == {} and summary["faces_classified"] == 0
    assert cv2.imread(str(out / "summary.png")) is not None


def test_client_certificate_flags_are_checked(video, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        video_main([str(video), "--tls-cert", str(video)])
    assert exit_info.value.code == 2 and "--tls-cert and --tls-key go together" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        video_main([str(video), "--tls-ca", str(tmp_path / "missing.pem")])
    assert "no such file" in capsys.readouterr().err


def test_frame_times_come_from_the_source(shared_server, video, tmp_path):
    from clients.sources import FrameSource

    source = open_source(str(video))
    frames = list(source.frames)
    assert [round(t, 3) for t in source.times[:3]] == [0.0, 0.033, 0.067]  # the container's timestamps
    # A variable-frame-rate source: irregular times are reported as they are, not as index / fps.
    times = [0.0, 0.05, 0.07, 0.2, 0.21, 0.4]
    vfr = FrameSource(iter(frames[:6]), 30.0, 6, "vfr", [], times=list(times))
    analyzer = VideoAnalyzer(EmotionClient(shared_server.address), AnalyzerConfig(explain="none", batch_frames=4))
    jsonl = tmp_path / "frames.jsonl"
    analyzer.run(vfr, jsonl=jsonl, progress=False)
    assert [json.loads(line)["time"] for line in jsonl.read_text().splitlines()] == times


def _record_analyzers(monkeypatch, what) -> list:
    """Makes clients.video build analyzers that note ``what(analyzer)`` in the returned list."""
    import clients.analyzer

    built = []

    class Recording(VideoAnalyzer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(what(self))

    monkeypatch.setattr(clients.analyzer, "VideoAnalyzer", Recording)
    return built


def test_the_second_look_can_be_turned_off(shared_server, video, tmp_path, monkeypatch):
    """--no-second-look saves BlazeFace's second pass per face (videos of many faces per frame); the video
    still runs, with a detector that skips it, and finds its face."""
    client = EmotionClient(shared_server.address)
    default = VideoAnalyzer(client, AnalyzerConfig(explain="none"))
    assert default.detector.second_look == 2.5
    assert default.tracker.box_smoothing == 1.0  # boxes as detected (notes-detector-sessions.md)
    built = _record_analyzers(monkeypatch, lambda analyzer: analyzer.detector.second_look)
    out = tmp_path / "out"
    assert video_main([str(video), "--server", shared_server.address, "--out-dir", str(out), "--explain", "none",
                       "--no-video", "--no-second-look", "--limit", "10"]) == 0
    assert built == [None] and any(r["faces"] for r in _records(out))


def test_levelling_the_crops_is_an_option(shared_server, video, tmp_path, monkeypatch):
    """Keypoint-framed crops keep the head's tilt by default (FER2013's faces are not levelled); --level turns
    them to level the eyes, in the crops the analyzer classifies."""
    from fer_keras.detection import Face, crop_face

    client = EmotionClient(shared_server.address)
    frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    tilted = Face((100, 60, 100, 100), 0.9, {"left_eye": (125, 100), "right_eye": (175, 118), "mouth": (145, 150)})
    plain = VideoAnalyzer(client, AnalyzerConfig(explain="none"))
    levelled = VideoAnalyzer(client, AnalyzerConfig(explain="none", level=True))
    assert plain.config.level is False
    assert np.array_equal(plain._crop(frame, tilted), crop_face(frame, tilted, client.face_size, align=True))
    assert np.array_equal(levelled._crop(frame, tilted),
                          crop_face(frame, tilted, client.face_size, align=True, level=True))
    assert not np.array_equal(plain._crop(frame, tilted), levelled._crop(frame, tilted))
    built = _record_analyzers(monkeypatch, lambda analyzer: analyzer.config.level)
    for flag in ("--level", "--no-level"):
        assert video_main([str(video), "--server", shared_server.address, "--out-dir", str(tmp_path / flag),
                           "--explain", "none", "--no-video", flag, "--limit", "3"]) == 0
    assert built == [True, False]
