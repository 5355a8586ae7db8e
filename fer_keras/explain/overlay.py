"""Drawing explanations on images (RGB uint8 in, RGB uint8 out).

``overlay_heatmap`` blends a JET-coloured map over a face as the GiMeFive
demo did (40 % by default); ``annotate_face`` draws one face's box, track id,
top emotion, probability bars, heatmap and landmarks on a frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from fer_keras.explain.cams import resize_map

BOX_COLOR = (0, 200, 255)
TEXT_COLOR = (255, 255, 255)
BAR_COLOR = (80, 220, 100)
LANDMARK_COLOR = (255, 60, 60)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """A [h, w] map in [0, 1] as an RGB JET image."""
    scaled = np.uint8(np.clip(heatmap, 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """``image`` (RGB, or gray [H, W] / [H, W, 1]) with ``heatmap`` resized onto it and blended at ``alpha``."""
    if image.ndim == 2 or image.shape[-1] == 1:
        image = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    color = colorize(resize_map(heatmap, image.shape[1], image.shape[0]))
    return cv2.addWeighted(image, 1 - alpha, color, alpha, 0)


def _clip_box(box, shape) -> tuple[int, int, int, int]:
    x, y, w, h = (int(v) for v in box)
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(shape[1], x + w), min(shape[0], y + h)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def annotate_face(
    frame: np.ndarray,
    box: Sequence[int],
    probabilities: Sequence[float],
    classes: Sequence[str],
    *,
    heatmap: np.ndarray | None = None,
    landmarks: dict[str, tuple[int, int]] | None = None,
    label: str | None = None,
    alpha: float = 0.4,
    bars: bool = True,
) -> np.ndarray:
    """Draws one face's explanation on ``frame`` (in place) and returns it.

    Args:
        frame: RGB frame.
        box: (x, y, w, h) of the face.
        probabilities: class probabilities in ``classes`` order.
        classes: class names.
        heatmap: a map in [0, 1] blended over the box.
        landmarks: named points drawn as dots.
        label: extra text before the emotion (a track id, say).
        alpha: heatmap opacity.
        bars: draw all class probabilities beside the box.
    """
    x, y, w, h = _clip_box(box, frame.shape)
    if heatmap is not None and w > 1 and h > 1:
        frame[y:y + h, x:x + w] = overlay_heatmap(frame[y:y + h, x:x + w], heatmap, alpha)
    cv2.rectangle(frame, (x, y), (x + w, y + h), BOX_COLOR, 2)
    probs = np.asarray(probabilities, float)
    top = int(probs.argmax())
    text = f"{label + ' ' if label else ''}{classes[top]} {probs[top]:.0%}"
    scale = max(0.4, min(1.0, w / 160))
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y - 6 if y - th - 8 >= 0 else y + h + th + 6
    cv2.rectangle(frame, (x, ty - th - 4), (x + tw + 4, ty + 4), BOX_COLOR, -1)
    cv2.putText(frame, text, (x + 2, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if bars:
        bar_x = x + w + 6 if x + w + 110 < frame.shape[1] else max(0, x - 110)
        for i, (name, p) in enumerate(zip(classes, probs)):
            by = y + 4 + i * 14
            if by + 10 > frame.shape[0]:
                break
            cv2.rectangle(frame, (bar_x, by), (bar_x + int(50 * p), by + 10), BAR_COLOR, -1)
            cv2.putText(frame, f"{name[:8]}", (bar_x + 52, by + 9), cv2.FONT_HERSHEY_SIMPLEX, 0.35, TEXT_COLOR, 1, cv2.LINE_AA)
    for px, py in (landmarks or {}).values():
        cv2.circle(frame, (int(px), int(py)), max(2, w // 60), LANDMARK_COLOR, -1)
    return frame
