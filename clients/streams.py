"""What one stream of frames carries from frame to frame: its face tracks, the smoothing of their
probabilities and when each track's explanation is refreshed.

The video client keeps one :class:`StreamState` for its video; the analysis service keeps one per
stream id its callers name (a camera page sends each frame with its stream id), in a
:class:`StreamTable` that bounds how many there are and forgets the idle ones. The per-image steps
(crops, explanations, the JSON of a face) are ``fer_keras.explain.analysis``'s.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from clients.cuts import ShotCutDetector
from clients.settings import AnalyzerConfig
from clients.tracking import IoUTracker, Track
from fer_keras.detection import Face
from fer_keras.explain.analysis import FaceExplanation

STREAM_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class StreamState:
    """One stream's tracker and smoothing.

    Args:
        config: the analysis settings (tracking, smoothing, how often a track's map is refreshed).
        confirm_score: detections scored below this wait for a second detection before they are shown.
        max_history: keep at most this many smoothed results per track, and at most this many ended
            tracks (None: everything, as a video's summary needs; a long-lived camera stream sets it).
    """

    def __init__(self, config: AnalyzerConfig, confirm_score: float, max_history: int | None = None):
        self.config = config
        self.tracker = IoUTracker(config.iou_threshold, box_smoothing=config.box_smoothing,
                                  confirm_score=confirm_score, min_similarity=config.min_similarity)
        self.max_history = max_history
        self.lock = threading.Lock()
        self.last_used = time.monotonic()
        self.frames = 0  # frames seen (the service numbers a stream's frames in the order they arrive)
        self.last_detection = -10**9  # the last frame the service ran the detector on
        self.cuts = ShotCutDetector() if config.cuts else None  # a stream's frames may jump (a camera switched)
        self.owner: str | None = None  # the model a service stream analyses with

    def next_frame(self) -> int:
        self.last_used = time.monotonic()
        self.frames += 1
        return self.frames - 1

    def cut(self) -> None:
        """A shot cut: every track ends."""
        self.tracker.reset()

    def is_cut(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` starts a new shot (``clients.cuts``); False where cuts are not looked for."""
        return self.cuts.update(frame) if self.cuts is not None else False

    def observe(self, index: int, faces: list[Face], looks: list[np.ndarray] | None = None) -> None:
        """The detections of frame ``index`` (with their appearance signatures, optionally)."""
        self.tracker.update(faces, index, looks)
        if self.max_history is not None:
            live = {t.track_id for t in self.tracker.tracks}
            ended = [k for k in self.tracker.all_tracks if k not in live]
            for key in ended[:max(0, len(ended) - self.max_history)]:
                del self.tracker.all_tracks[key]

    def live(self, index: int) -> list[tuple[Track, Face]]:
        """The tracks shown at frame ``index``, each with its face there."""
        return [(t, t.face_at(index)) for t in self.tracker.live()]

    def smooth(self, track: Track, probabilities: np.ndarray, index: int) -> np.ndarray:
        """The track's moving average after this frame's probabilities (kept in its history)."""
        smoothed = track.smooth(probabilities, self.config.smoothing).copy()
        track.history.append((index, smoothed))
        if self.max_history is not None and len(track.history) > self.max_history:
            del track.history[: len(track.history) - self.max_history]
        return smoothed

    def stale(self, track: Track, index: int) -> bool:
        """Whether the track's explanation is older than ``explain_every`` frames at ``index``."""
        return index - track.heatmap_frame >= self.config.explain_every

    @staticmethod
    def refreshed(track: Track, index: int, explanation: FaceExplanation) -> None:
        track.heatmap, track.heatmap_frame, track.explanation = explanation.heatmap, index, explanation


class StreamTable:
    """The service's streams by id: each made on first use, forgotten after ``idle_seconds`` without a
    frame, at most ``max_streams`` at once (the longest idle one makes room for a new one).

    Args:
        make: builds a new stream's state.
        idle_seconds: a stream unused this long is forgotten (its next frame starts afresh).
        max_streams: streams held at once.
    """

    def __init__(self, make: Callable[[], StreamState], idle_seconds: float = 120.0, max_streams: int = 256):
        self.make = make
        self.idle_seconds = idle_seconds
        self.max_streams = max_streams
        self._streams: OrderedDict[str, StreamState] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, stream_id: str) -> StreamState:
        """The stream's state (new where unknown or expired). Raises ValueError for a malformed id."""
        if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
            raise ValueError(f"stream id must be 1-64 letters, digits, '.', '_' or '-'; got {stream_id!r:.80}")
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            state = self._streams.get(stream_id)
            if state is None:
                while len(self._streams) >= self.max_streams:
                    self._streams.popitem(last=False)
                state = self._streams[stream_id] = self.make()
            self._streams.move_to_end(stream_id)
            state.last_used = now
            return state

    def drop(self, stream_id: str) -> bool:
        with self._lock:
            return self._streams.pop(stream_id, None) is not None

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._streams.items() if now - s.last_used > self.idle_seconds]:
            del self._streams[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)
