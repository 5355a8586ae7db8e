"""A fake camera for the browser page: FER2013 test faces in 640x480 scenes, written as the y4m file
Chromium plays as its camera (``--use-file-for-fake-video-capture``), and the Chromium flags that do it.

Used by the page's browser tests (``tests/service/test_page.py``) and its frame-rate benchmark
(``benchmarks/page_fps.py``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

FOLDERS = {"happiness": "happy", "surprise": "surprise", "sadness": "sad", "anger": "angry", "disgust": "disgust",
           "fear": "fear", "neutral": "neutral"}
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str | None:
    """Debian's Chromium (what the README's set-up installs), or another Chrome on the PATH."""
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_args(y4m: Path | None = None) -> list[str]:
    """Headless Chromium with a fake camera that needs no permission prompt (playing ``y4m`` where given),
    and without the background connections a closed network refuses."""
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream"]
    if y4m is not None:
        args.append(f"--use-file-for-fake-video-capture={y4m}")
    return args


def fer2013_test_faces(fer2013: Path, label: str, count: int, start: int = 0) -> list[tuple[str, np.ndarray]]:
    """``count`` FER2013 test faces of ``label`` (PrivateTest and PublicTest, in name order), as
    ``(file name, 48x48 gray)``."""
    folder = Path(fer2013) / "test" / FOLDERS[label]
    files = sorted(folder.glob("*.jpg"))[start:start + count]
    if len(files) < count:
        raise FileNotFoundError(f"{folder} holds fewer than {start + count} faces")
    return [(f.name, cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)) for f in files]


def scene(face: np.ndarray, side: int = 240, seed: int = 0, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """One RGB scene: ``face`` upscaled to ``side`` pixels in the middle of a blurred-noise background."""
    width, height = size
    rng = np.random.default_rng(seed)
    frame = cv2.GaussianBlur(rng.integers(30, 220, (height, width), dtype=np.uint8), (0, 0), 20)
    x, y = (width - side) // 2, (height - side) // 2
    frame[y:y + side, x:x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """RGB frames (all one size, even sides) as an uncompressed YUV 4:2:0 y4m file."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return Path(path)
