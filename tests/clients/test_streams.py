"""A stream's state: tracks and smoothing carried between frames, bounded, forgotten when idle."""

import threading

import numpy as np
import pytest

from clients.settings import AnalyzerConfig
from clients.streams import StreamState, StreamTable
from fer_keras.detection import Face


def test_a_stream_keeps_tracks_and_smooths_with_bounded_history():
    state = StreamState(AnalyzerConfig(smoothing=0.5), confirm_score=0.0, max_history=5)
    for frame in range(12):
        state.observe(frame, [Face((100 + frame, 100, 80, 80), 0.9)])
        (track, face), = state.live(frame)
        smoothed = state.smooth(track, np.array([1.0, 0.0]) if frame % 2 else np.array([0.0, 1.0]), frame)
    assert track.track_id == 1 and face.box == (111, 100, 80, 80)
    assert len(track.history) == 5 and [i for i, _ in track.history] == [7, 8, 9, 10, 11]
    assert 0.5 < smoothed[0] < 0.75  # an average, newest weighing half
    # ended tracks are kept only up to the bound: faces that come and go one at a time
    for frame in range(12, 40):
        state.observe(frame, [Face((20 * (frame % 2), 0, 30, 30), 0.9)] if frame % 4 == 0 else [])
    assert len(state.tracker.all_tracks) <= 5 + len(state.tracker.tracks)


def test_explanations_are_refreshed_every_n_frames():
    state = StreamState(AnalyzerConfig(explain_every=3), confirm_score=0.0)
    state.observe(0, [Face((0, 0, 50, 50))])
    (track, _), = state.live(0)
    assert state.stale(track, 0)
    state.refreshed(track, 0, type("E", (), {"heatmap": np.zeros((4, 4))})())
    assert [state.stale(track, f) for f in (1, 2, 3)] == [False, False, True]


def test_the_table_names_streams_bounds_them_and_forgets_the_idle():
    made = []
    table = StreamTable(lambda: made.append(1) or StreamState(AnalyzerConfig(), 0.0), idle_seconds=60, max_streams=3)
    a = table.get("a")
    assert table.get("a") is a and len(made) == 1
    for name in ("b", "c", "d"):
        table.get(name)
    assert len(table) == 3 and table.get("a") is not a  # "a", the longest idle, made room
    for bad in ("", "two words", "x" * 65, "../etc", None):
        with pytest.raises(ValueError, match="stream id"):
            table.get(bad)
    table.idle_seconds = 0.0
    b = table.get("b")
    assert table.get("b") is not b  # idle past the limit: forgotten, begins afresh
    assert table.drop("b") and not table.drop("b")


def test_the_table_gives_one_state_per_id_under_concurrent_use():
    table = StreamTable(lambda: StreamState(AnalyzerConfig(), 0.0))
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(table.get("cam"))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in seen}) == 1
