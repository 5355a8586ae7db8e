"""A light IoU tracker and per-track smoothing of emotion probabilities.

Detection runs every k frames; in between, each track's box moves on at the
velocity measured between its last two detections (a constant-velocity
guess). At each detection, detections are matched to the tracks' predicted
boxes greedily by IoU; unmatched detections start new tracks; a track the
detector misses coasts on (still classified) until it has gone unmatched for
more than ``max_missed`` detections, then ends.
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
    frame: int = 0                 # frame of the last matched detection
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame
    missed: int = 0
    probabilities: np.ndarray | None = None   # smoothed
    heatmap: np.ndarray | None = None
    heatmap_frame: int = -10**9
    history: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, smoothed probabilities)

    def face_at(self, frame: int) -> Face:
        """The face moved on to ``frame`` at the track's velocity."""
        steps = frame - self.frame
        if steps == 0 or self.velocity == (0.0, 0.0):
            return self.face
        dx, dy = (int(round(v * steps)) for v in self.velocity)
        x, y, w, h = self.face.box
        marks = {k: (px + dx, py + dy) for k, (px, py) in self.face.landmarks.items()}
        return Face((x + dx, y + dy, w, h), self.face.score, marks)

    def observe(self, face: Face, frame: int) -> None:
        """A matched detection: update the box and the velocity."""
        if frame > self.frame:
            (x0, y0, _, _), (x1, y1, _, _) = self.face.box, face.box
            self.velocity = ((x1 - x0) / (frame - self.frame), (y1 - y0) / (frame - self.frame))
        self.face, self.frame, self.missed = face, frame, 0

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

    def update(self, faces: list[Face], frame: int = 0) -> list[Track]:
        """Matches the detections of ``frame`` and returns the live tracks."""
        predicted = [t.face_at(frame).box for t in self.tracks]
        pairs = sorted(((iou(p, f.box), ti, fi) for ti, p in enumerate(predicted) for fi, f in enumerate(faces)),
                       reverse=True)
        used_tracks, used_faces = set(), set()
        for score, ti, fi in pairs:
            if score < self.iou_threshold:
                break
            if ti in used_tracks or fi in used_faces:
                continue
            used_tracks.add(ti)
            used_faces.add(fi)
            self.tracks[ti].observe(faces[fi], frame)
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                track = Track(self._next_id, face, frame)
                self.tracks.append(track)
                self.all_tracks[track.track_id] = track
                self._next_id += 1
        return self.live()

    def live(self) -> list[Track]:
        """Tracks still followed (the ones drawn and classified): a face the detector
        misses for up to ``max_missed`` rounds coasts on at its velocity."""
        return list(self.tracks)
