"""A light IoU tracker and per-track smoothing of emotion probabilities.

Detection runs every k frames; in between, each track keeps its last box
(faces move little in a third of a second). At each detection, detections
are matched to tracks greedily by IoU; unmatched detections start new tracks;
tracks unseen for ``max_missed`` detections end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fer_keras.detection import Face


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One face followed over frames."""

    track_id: int
    face: Face
    missed: int = 0
    probabilities: np.ndarray | None = None   # smoothed
    heatmap: np.ndarray | None = None
    heatmap_frame: int = -10**9
    history: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, smoothed probabilities)

    def smooth(self, probabilities: np.ndarray, alpha: float) -> np.ndarray:
        """Exponential moving average: ``alpha`` weighs the newest frame (1 = no smoothing)."""
        p = np.asarray(probabilities, np.float32)
        self.probabilities = p if self.probabilities is None else alpha * p + (1 - alpha) * self.probabilities
        return self.probabilities


class IoUTracker:
    """Greedy IoU matching of detections to tracks.

    Args:
        iou_threshold: least IoU for a detection to continue a track.
        max_missed: detection rounds a track may go unmatched before it ends.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self.all_tracks: dict[int, Track] = {}  # every track ever started, ended ones included
        self._next_id = 1

    def update(self, faces: list[Face]) -> list[Track]:
        """Matches one detection round and returns the live tracks."""
        pairs = sorted(((iou(t.face.box, f.box), ti, fi) for ti, t in enumerate(self.tracks) for fi, f in enumerate(faces)),
                       reverse=True)
        used_tracks, used_faces = set(), set()
        for score, ti, fi in pairs:
            if score < self.iou_threshold:
                break
            if ti in used_tracks or fi in used_faces:
                continue
            used_tracks.add(ti)
            used_faces.add(fi)
            self.tracks[ti].face = faces[fi]
            self.tracks[ti].missed = 0
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                track = Track(self._next_id, face)
                self.tracks.append(track)
                self.all_tracks[track.track_id] = track
                self._next_id += 1
        return self.live()

    def live(self) -> list[Track]:
        """Tracks matched at the latest detection (the ones drawn and classified)."""
        return [t for t in self.tracks if t.missed == 0]
