"""Frame sources (video file, image folder, camera) and the annotated-video sink.

Sources yield RGB frames; the sink takes RGB frames and writes a video with
OpenCV (``mp4v`` for .mp4, ``MJPG`` for .avi: the codecs the headless wheel has).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_keras.data.readers.common import IMAGE_EXTENSIONS
from fer_keras.detection import to_rgb


class SourceError(ValueError):
    """An input that cannot be read as frames."""


@dataclass
class FrameSource:
    """Frames with their rate and count (count is None for a camera).

    ``times`` fills, as frames are read, with each frame's presentation time in seconds where the
    container gives one (a variable-frame-rate video's real timing); otherwise it stays empty and
    frame ``i`` is at ``i / fps``.
    """

    frames: Iterator[np.ndarray]
    fps: float
    count: int | None
    name: str
    skipped: list[str]
    times: list[float] = field(default_factory=list)

    def time_of(self, index: int) -> float:
        return self.times[index] if index < len(self.times) else index / self.fps


def open_source(path: str | None = None, camera: int | None = None, folder_fps: float = 30.0) -> FrameSource:
    """Opens a video file, a folder of images (sorted by name) or a camera."""
    if camera is not None:
        capture = cv2.VideoCapture(camera)
        if not capture.isOpened():
            raise SourceError(f"cannot open camera {camera}")
        return FrameSource(_capture_frames(capture), capture.get(cv2.CAP_PROP_FPS) or 30.0, None, f"camera{camera}", [])
    if path is None:
        raise SourceError("give an input video, image folder, or --camera N")
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise SourceError(f"{p} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        skipped: list[str] = []
        return FrameSource(_folder_frames(files, skipped), folder_fps, len(files), p.name, skipped)
    if not p.is_file():
        raise SourceError(f"{p} does not exist")
    capture = cv2.VideoCapture(str(p))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        raise SourceError(f"cannot read {p} as a video (no decodable frame)")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    skipped: list[str] = []
    times: list[float] = [max(0.0, capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)]  # the first frame's
    return FrameSource(_capture_frames(capture, first, count, skipped, times), capture.get(cv2.CAP_PROP_FPS) or 30.0,
                       count, p.stem, skipped, times)


def _capture_frames(capture, first=None, count: int | None = None, skipped: list[str] | None = None,
                    times: list[float] | None = None) -> Iterator[np.ndarray]:
    """Decoded frames. Where the container says more frames follow, a frame that does not decode (a
    damaged stretch, a file cut short) is listed in ``skipped`` as ``"frame N"`` and reading goes on
    after it, so a damaged middle costs only its own frames."""
    try:
        index = 0
        if first is not None:
            yield to_rgb(first, "bgr")
            index = 1
        while True:
            ok, frame = capture.read()
            if ok:
                index += 1
                if times is not None:
                    times.append(max(0.0, capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0))
                yield to_rgb(frame, "bgr")
                continue
            if count is None or index >= count or skipped is None:
                return
            skipped.append(f"frame {index}")
            index += 1
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
    finally:
        capture.release()


def _folder_frames(files: list[Path], skipped: list[str]) -> Iterator[np.ndarray]:
    size = None
    for f in files:
        image = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if image is None:
            skipped.append(str(f))
            continue
        rgb = to_rgb(image, "bgr")
        size = size or rgb.shape[1::-1]
        yield rgb if rgb.shape[1::-1] == size else cv2.resize(rgb, size)


class VideoSink:
    """Writes RGB frames to a video file; opened on the first frame (its size decides)."""

    def __init__(self, path: str | Path, fps: float):
        self.path = Path(path)
        self.fps = fps
        self._writer = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self._writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, frame.shape[1::-1])
            if not self._writer.isOpened():
                raise SourceError(f"cannot write video {self.path}")
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
