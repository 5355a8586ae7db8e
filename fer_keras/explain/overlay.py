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
    avoid: Sequence[Sequence[int]] = (),
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
        avoid: other faces' (x, y, w, h) boxes: the label and the bars go where
            they cover none of them (or as little as they can), inside the frame.
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
    fh, fw = frame.shape[:2]
    lx = int(np.clip(x, 0, max(0, fw - tw - 4)))  # the whole text inside the frame, never cut
    spots = [(lx, y - th - 10), (lx, y + h + 2), (lx, y + 2)]  # above, below, inside the top of the box
    lx, ly = _free_spot(spots, (tw + 4, th + 8), avoid, (fw, fh))
    cv2.rectangle(frame, (lx, ly), (lx + tw + 4, ly + th + 8), BOX_COLOR, -1)
    cv2.putText(frame, text, (lx + 2, ly + th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    if bars:
        names_w = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, 0.35, 1)[0][0] for n in classes)
        bw, bh = 52 + names_w + 2, 14 * len(classes)
        spots = [(x + w + 6, y), (x - bw - 6, y), (x + w + 6, y + h - bh), (x - bw - 6, y + h - bh)]
        bar_x, bar_y = _free_spot(spots, (bw, bh), [*avoid, (lx, ly, tw + 4, th + 8)], (fw, fh))
        for i, (name, p) in enumerate(zip(classes, probs)):
            by = bar_y + 4 + i * 14
            cv2.rectangle(frame, (bar_x, by), (bar_x + int(50 * p), by + 10), BAR_COLOR, -1)
            cv2.putText(frame, name, (bar_x + 52, by + 9), cv2.FONT_HERSHEY_SIMPLEX, 0.35, TEXT_COLOR, 1, cv2.LINE_AA)
    for px, py in (landmarks or {}).values():
        cv2.circle(frame, (int(px), int(py)), max(2, w // 60), LANDMARK_COLOR, -1)
    return frame


def _overlap(a, b) -> int:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def _free_spot(spots, size, avoid, frame_size) -> tuple[int, int]:
    """The first of ``spots`` (top-left corners) where a ``size`` box fits the frame and covers none of
    ``avoid``; else the one covering least (moved inside the frame)."""
    (bw, bh), (fw, fh) = size, frame_size
    best, best_cost = None, None
    for sx, sy in spots:
        inside = 0 <= sx and sx + bw <= fw and 0 <= sy and sy + bh <= fh
        sx, sy = int(np.clip(sx, 0, max(0, fw - bw))), int(np.clip(sy, 0, max(0, fh - bh)))
        cost = sum(_overlap((sx, sy, bw, bh), tuple(int(v) for v in b)) for b in avoid) + (0 if inside else 1)
        if best_cost is None or cost < best_cost:
            best, best_cost = (sx, sy), cost
        if cost == 0:
            break
    return best
