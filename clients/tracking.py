"""A light IoU tracker and per-track smoothing of emotion probabilities.

Detection runs every k frames; in between, each track's box moves on at the
velocity measured between its detections (a constant-velocity guess).
Detector boxes jitter from one detection to the next (MTCNN's box side varies
by about 10 % on the same face), so a track blends each matched detection with
its own prediction: ``box_smoothing`` is the weight of the new detection for
the box centre, size and velocity (1 takes detections as they are).

A new detection scored below ``confirm_score`` starts a tentative track that
is shown only once a second detection confirms it: with MTCNN's permissive
candidate stages a patch of clothing may score 0.7 once, while 94 % of real
FER2013 faces score 0.9 or more and are shown at once. At each detection,
detections are matched to the tracks' predicted boxes greedily by IoU; a
detection whose face does not look like the track's last one (appearance
correlation below ``min_similarity``, when appearances are given) does not
continue it, so two faces that cross keep their own tracks. Unmatched
detections start new tracks. A track the detection round did not confirm is
neither classified nor drawn; it is kept, unseen, for up to ``max_missed``
rounds so that a face the detector missed once gets its own track back, then
ends. At a shot cut (:meth:`IoUTracker.reset`) every track ends: a face in the
new shot always starts a new track, with no probabilities, heatmap or box of
the old one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from fer_keras.detection import Face, iou  # noqa: F401 (iou: imported from here by callers)
from fer_keras.explain.analysis import FaceExplanation


def appearance(crop: np.ndarray) -> np.ndarray:
    """A face crop's appearance signature: 24x24, lightly blurred, zero mean, unit norm.

    The correlation of two signatures (their dot product) is 0.88 in the median for the same FER2013
    face under box jitter (5th percentile 0.69) and 0.09 for two different faces (95th percentile 0.61).
    """
    gray = crop.reshape(crop.shape[:2]).astype(np.float32)
    sig = cv2.GaussianBlur(cv2.resize(gray, (24, 24), interpolation=cv2.INTER_AREA), (0, 0), 1.0)
    sig -= sig.mean()
    return sig / (float(np.linalg.norm(sig)) + 1e-6)


@dataclass
class Track:
    """One face followed over frames."""

    track_id: int                  # 0 while tentative
    face: Face
    frame: int = 0                 # frame of the last matched detection
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame
    missed: int = 0
    hits: int = 1                  # detections matched so far (the first included)
    probabilities: np.ndarray | None = None   # smoothed
    heatmap: np.ndarray | None = None
    heatmap_frame: int = -10**9
    explanation: FaceExplanation | None = None  # the latest, made at heatmap_frame
    appearance: np.ndarray | None = None  # signature of the last matched detection
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

    def observe(self, face: Face, frame: int, smoothing: float = 1.0) -> None:
        """A matched detection: update the box and the velocity.

        Args:
            face: the detection.
            frame: its frame.
            smoothing: weight of the detection against the track's prediction
                (1: take the detection as it is). The first two detections of a
                track are taken as they are, to measure a first velocity.
        """
        if frame <= self.frame:
            self.face, self.missed = face, 0
            return
        steps = frame - self.frame
        (x0, y0, w0, h0), (x1, y1, w1, h1) = self.face.box, face.box
        c0 = np.array([x0 + w0 / 2, y0 + h0 / 2])
        c1 = np.array([x1 + w1 / 2, y1 + h1 / 2])
        a = 1.0 if self.hits < 2 else float(smoothing)
        predicted = c0 + np.array(self.velocity) * steps
        centre = a * c1 + (1 - a) * predicted
        w, h = a * w1 + (1 - a) * w0, a * h1 + (1 - a) * h0
        measured = (centre - c0) / steps
        velocity = measured if self.hits < 2 else a * measured + (1 - a) * np.array(self.velocity)
        self.velocity = (float(velocity[0]), float(velocity[1]))
        if a < 1:
            dx, dy = centre - c1
            box = (int(round(centre[0] - w / 2)), int(round(centre[1] - h / 2)), int(round(w)), int(round(h)))
            marks = {k: (int(round(px + dx)), int(round(py + dy))) for k, (px, py) in face.landmarks.items()}
            face = Face(box, face.score, marks)
        self.face, self.frame, self.missed = face, frame, 0
        self.hits += 1

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
        box_smoothing: weight of a matched detection against the track's
            prediction (see :meth:`Track.observe`; 1 = none).
        confirm_score: a detection scored at least this starts a track shown at
            once; a lower one needs a second detection (0 shows every detection).
        min_similarity: least appearance correlation for a detection to continue
            a track, when appearances are given (see :func:`appearance`).
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2, box_smoothing: float = 0.5,
                 confirm_score: float = 0.9, min_similarity: float = 0.4):
        if not 0 < box_smoothing <= 1:
            raise ValueError(f"box_smoothing must be in (0, 1]; got {box_smoothing}")
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.box_smoothing = box_smoothing
        self.confirm_score = confirm_score
        self.min_similarity = min_similarity
        self.tracks: list[Track] = []
        self.all_tracks: dict[int, Track] = {}  # every track ever started, ended ones included
        self._next_id = 1

    def number_after(self, last_id: int) -> None:
        """New tracks are numbered from ``last_id + 1`` (a resumed run keeps its earlier tracks' numbers)."""
        self._next_id = max(self._next_id, last_id + 1)

    def update(self, faces: list[Face], frame: int = 0, appearances: list[np.ndarray] | None = None) -> list[Track]:
        """Matches the detections of ``frame`` (with their :func:`appearance` signatures, optionally)
        and returns the live tracks."""
        predicted = [t.face_at(frame).box for t in self.tracks]
        pairs = sorted(((iou(p, f.box), ti, fi) for ti, p in enumerate(predicted) for fi, f in enumerate(faces)),
                       reverse=True)
        used_tracks, used_faces = set(), set()
        for score, ti, fi in pairs:
            if score < self.iou_threshold:
                break
            if ti in used_tracks or fi in used_faces or not self._looks_alike(self.tracks[ti], appearances, fi):
                continue
            used_tracks.add(ti)
            used_faces.add(fi)
            self.tracks[ti].observe(faces[fi], frame, self.box_smoothing)
            if appearances is not None:
                self.tracks[ti].appearance = appearances[fi]
        for ti, track in enumerate(self.tracks):
            if ti not in used_tracks:
                track.missed += 1
            elif not track.track_id:
                self._confirm(track)
        # A tentative track the detector does not see again ends at once.
        self.tracks = [t for t in self.tracks if t.missed <= (self.max_missed if t.track_id else 0)]
        for fi, face in enumerate(faces):
            if fi not in used_faces:
                track = Track(0, face, frame, appearance=appearances[fi] if appearances is not None else None)
                self.tracks.append(track)
                if face.score >= self.confirm_score:
                    self._confirm(track)
        return self.live()

    def _looks_alike(self, track: Track, appearances, fi: int) -> bool:
        if appearances is None or track.appearance is None:
            return True
        return float((track.appearance * appearances[fi]).sum()) >= self.min_similarity

    def reset(self) -> None:
        """A shot cut: every track ends (it stays in ``all_tracks`` with its history)."""
        self.tracks = []

    def _confirm(self, track: Track) -> None:
        track.track_id = self._next_id
        self.all_tracks[track.track_id] = track
        self._next_id += 1

    def live(self) -> list[Track]:
        """The tracks drawn and classified: confirmed, and matched by the latest detection round.

        Between detection rounds their boxes move on at their velocities. A track
        the latest round missed, and a tentative one, is not among them."""
        return [t for t in self.tracks if t.track_id and t.missed == 0]
