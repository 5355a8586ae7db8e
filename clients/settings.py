"""The video analyzer's settings: a light module (no TensorFlow), so that the command line can build
its flags and defaults before anything heavy loads."""

from __future__ import annotations

from dataclasses import dataclass

from fer_keras.detection import FER_MARGIN, LEVEL_EYES
from fer_keras.explain.methods import DEFAULT_METHOD, SERVED_METHODS

EXPLAIN_CHOICES = (*SERVED_METHODS, "none")
# The analysis service's camera streams arrive at 10-15 frames a second (a page waits for each answer):
# detecting every 2nd frame detects about as often in time as the video client's every 5th at 30 frames/s.
STREAM_DETECT_EVERY = 2


@dataclass(frozen=True)
class AnalyzerConfig:
    """How the analyzer works. Defaults in one place; the CLI parses flags into this.

    Attributes:
        detector: "blazeface", "mtcnn", "haar" or "none" (frames are face crops).
        detect_every: run the detector every k frames (and on the first frame
            after each cut); track boxes in between.
        explain: the served explanation method whose heatmaps are drawn
            (``fer_keras.explain.methods.SERVED_METHODS``; default ``DEFAULT_METHOD``,
            "gradact-fused") or "none".
        explain_every: refresh each track's heatmap every n frames.
        smoothing: weight of the newest frame in each track's moving average (1 = none).
        batch_frames: frames whose faces share one Predict call.
        max_in_flight: Predict calls outstanding at once.
        margin: crop margin around a box (share of its side); the default
            reproduces FER2013's framing (``fer_keras.detection.FER_MARGIN``).
        align: frame each face from its keypoints before classifying: scaled and centred as FER2013
            frames faces (``fer_keras.detection.keypoint_square``); False: the detector's box.
        level: with ``align``, also turn each crop to level the eyes (off: FER2013's faces are not
            levelled, and levelled crops scored lower; ``fer_keras.detection.LEVEL_EYES``).
        second_look: BlazeFace looks at each face again in a window 2.5 times its box (the face's own
            scale where the first box was too big; ``fer_keras.detection.BlazeFaceDetector``); False saves
            one BlazeFace pass per face at each detection (videos of many faces per frame).
        queue_size: frames buffered between stages.
        alpha: heatmap opacity in the annotated video.
        iou_threshold: least IoU for a detection to continue a track.
        box_smoothing: weight of a new detection against its track's predicted
            box (1: take detector boxes as they are; 0.5 steadied the verified
            BlazeFace's boxes by 0.03 px per frame and cost recall, false boxes and
            IoU on four benchmark videos: docs/results/notes-detector-sessions.md,
            "Box smoothing off").
        confirm_score: detections scored below this are shown only once a
            second detection confirms them (0 shows every detection at once;
            None: the detector's own ``confirm_score``: 0 for BlazeFace with
            its O-Net verification (the default), 0.75 for BlazeFace alone,
            0.9 for MTCNN, 0 for detectors without scores).
        cuts: detect shot cuts and end every track at one.
        min_similarity: least appearance correlation for a detection to
            continue a track (``clients.tracking.appearance``; 0 turns it off).
    """

    detector: str = "blazeface"
    detect_every: int = 5
    explain: str = DEFAULT_METHOD
    explain_every: int = 10
    smoothing: float = 0.5
    batch_frames: int = 8
    max_in_flight: int = 3
    margin: float = FER_MARGIN
    align: bool = True
    level: bool = LEVEL_EYES
    second_look: bool = True
    queue_size: int = 32
    alpha: float = 0.4
    iou_threshold: float = 0.3
    box_smoothing: float = 1.0
    confirm_score: float | None = None
    cuts: bool = True
    min_similarity: float = 0.4

    def __post_init__(self):
        if self.detect_every < 1 or self.explain_every < 1 or self.batch_frames < 1 or self.max_in_flight < 1:
            raise ValueError("detect_every, explain_every, batch_frames and max_in_flight must be at least 1")
        if self.explain not in EXPLAIN_CHOICES:
            raise ValueError(f"explain must be one of {', '.join(EXPLAIN_CHOICES)}; got {self.explain!r}")
        for name in ("smoothing", "box_smoothing"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]; got {getattr(self, name)}")
        if self.margin <= -0.5:
            raise ValueError(f"margin must be above -0.5; got {self.margin}")
        if not 0 <= self.min_similarity <= 1:
            raise ValueError(f"min_similarity must be in [0, 1]; got {self.min_similarity}")
