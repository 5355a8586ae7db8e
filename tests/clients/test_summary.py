"""The one-figure video report: the emotion mix of all faces over time, counts, the longest tracks."""

import cv2
import numpy as np

from clients.analyzer import emotion_mix, plot_video_summary, timeline_tracks
from clients.tracking import Track
from fer_keras.data.taxonomy import SIX
from fer_keras.detection import Face

FPS = 30


def _track(track_id, start, length, emotion):
    """A track whose smoothed probabilities lean 70 % on one emotion."""
    p = np.full(6, 0.06, np.float32)
    p[emotion] = 0.7
    track = Track(track_id, Face((0, 0, 10, 10), 1.0))
    track.history = [(start + i, p) for i in range(length)]
    return track


def _many_short_shots():
    """58 s cut every 15 frames, two faces a shot: 232 tracks of half a second."""
    tracks, cuts = [], list(range(15, 58 * FPS, 15))
    for shot, start in enumerate(range(0, 58 * FPS, 15)):
        tracks += [_track(2 * shot + 1, start, 15, shot % 6), _track(2 * shot + 2, start, 15, (shot + 1) % 6)]
    return tracks, {"frames": 58 * FPS, "cuts": cuts, "input": "shots.mp4"}


def _one_long_shot():
    """40 s, one face: happy for 25 s, then surprised; nobody for the last 5 s."""
    happy, surprised = _track(1, 0, 25 * FPS, 0), _track(1, 25 * FPS, 10 * FPS, 1)
    happy.history += surprised.history
    return [happy], {"frames": 40 * FPS, "cuts": [], "input": "long.mp4"}


def test_the_mix_averages_every_face_in_each_second_and_leaves_empty_seconds_blank():
    tracks, summary = _one_long_shot()
    mix = emotion_mix(tracks, 6, FPS, summary["frames"])
    assert mix.shape == (40, 6)
    np.testing.assert_allclose(mix[:25, 0], 0.7, atol=1e-6)
    np.testing.assert_allclose(mix[25:35, 1], 0.7, atol=1e-6)
    assert np.isnan(mix[35:]).all()
    tracks, summary = _many_short_shots()
    mix = emotion_mix(tracks, 6, FPS, summary["frames"])
    assert mix.shape == (58, 6) and not np.isnan(mix).any()
    np.testing.assert_allclose(mix.sum(axis=1), 1.0, atol=1e-5)  # shares of every face in the second
    assert (mix.max(axis=1) < 0.7).all()  # two faces with different emotions in each second


def test_only_tracks_long_enough_to_read_get_a_timeline_row():
    tracks, summary = _many_short_shots()
    assert timeline_tracks(tracks, FPS, summary["frames"]) == []  # half-second tracks: the faces in view instead
    tracks, summary = _one_long_shot()
    assert timeline_tracks(tracks, FPS, summary["frames"]) == tracks
    mixed = [_track(1, 0, 10, 0), _track(2, 100, 300, 1), _track(3, 20, 200, 2)]
    assert [t.track_id for t in timeline_tracks(mixed, FPS, 40 * FPS)] == [3, 2]  # by appearance; 1 too short


def test_the_report_is_drawn_for_many_short_shots_and_for_one_long_shot(tmp_path):
    for name, (tracks, summary) in {"shots": _many_short_shots(), "long": _one_long_shot()}.items():
        path = plot_video_summary(summary, tracks, SIX.classes, FPS, tmp_path / f"{name}.png")
        image = cv2.imread(str(path))
        assert image is not None and image.shape[1] > 1000
    empty = plot_video_summary({"frames": 90, "cuts": []}, [], SIX.classes, FPS, tmp_path / "empty.png")
    assert cv2.imread(str(empty)) is not None
