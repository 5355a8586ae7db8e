"""The analysis of one image's faces, shared by every path that analyses images: the video client
(``clients.analyzer``), the HTTP analysis service (``clients.service``) and ``python -m fer_keras.explain``.

Stateless: given detections, it cuts the crops the classifier sees, turns explanation maps into the
regions they cover, and writes one JSON record per face. What carries from frame to frame of a stream
(tracks, smoothing, when a track's map is refreshed) lives in ``clients.streams``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from fer_keras.detection import (
    FER_MARGIN,
    LEVEL_EYES,
    Face,
    classified_region,
    classified_square,
    crop_face,
    keypoints_in_crop,
)
from fer_keras.explain.regions import face_regions, region_shares


@dataclass(frozen=True)
class Framing:
    """How a detected face becomes the square crop the classifier sees.

    Attributes:
        margin: extra border around the face's square, as a share of its side.
        align: frame the face from its keypoints as FER2013 frames its faces (the default of every path
            that detects faces); False: the detector's box.
        level: with ``align``, also turn the crop to level the eyes.
    """

    margin: float = FER_MARGIN
    align: bool = True
    level: bool = LEVEL_EYES

    def crop(self, image: np.ndarray, face: Face, size: int) -> np.ndarray:
        """``[size, size, 1]`` grayscale uint8 crop of ``face`` in the RGB ``image``."""
        return crop_face(image, face, size, self.margin, self.align, self.level)

    def crops(self, image: np.ndarray, faces: Sequence[Face], size: int) -> np.ndarray:
        """``[len(faces), size, size, 1]`` crops (an empty stack for no faces)."""
        if not faces:
            return np.zeros((0, size, size, 1), np.uint8)
        return np.stack([self.crop(image, face, size) for face in faces])

    def region(self, face: Face) -> tuple[int, int, int, int]:
        """The square of the image that was classified, ``(x, y, side, side)``."""
        return classified_region(face, self.margin, self.align, self.level)

    def angle(self, face: Face) -> float:
        """The classified square's turn in degrees (0 unless ``level``)."""
        return classified_square(face, self.margin, self.align, self.level)[3]

    def keypoints_in_crop(self, face: Face, size: int) -> dict:
        return keypoints_in_crop(face, size, self.margin, self.align, self.level)


UNFRAMED = Framing(margin=0.0, align=False, level=False)  # the image is the face crop (no detection)


@dataclass
class FaceExplanation:
    """One face's explanation map and where its mass lies.

    Attributes:
        method: the explanation method (``fer_keras.explain.methods``).
        class_id: the class the map explains.
        heatmap: ``[h, w]`` map in [0, 1] over the classified crop.
        regions: share of the map's mass on eyes, nose, mouth and elsewhere.
        regions_from: "keypoints" (the face's own) or "template" (a canonical face layout).
        size: the crop's side in pixels (the map's PNG is drawn at it).
    """

    method: str
    class_id: int
    heatmap: np.ndarray
    regions: dict[str, float]
    regions_from: str
    size: int

    @property
    def blank(self) -> bool:
        """A constant map says nothing (a CAM whose gradients vanished)."""
        return bool(np.ptp(self.heatmap) <= 1e-12)

    def to_json(self, classes: Sequence[str], heatmap_png: bool = False) -> dict:
        record = {"method": self.method, "class": classes[self.class_id], "blank_map": self.blank,
                  "regions_from": self.regions_from, "regions": {k: round(v, 4) for k, v in self.regions.items()}}
        if heatmap_png:
            record["heatmap_png"] = base64.b64encode(heatmap_png_bytes(self.heatmap, self.size)).decode("ascii")
        return record


def explain_faces(method: str, maps: np.ndarray, class_ids: Sequence[int], faces: Sequence[Face], size: int,
                  framing: Framing) -> list[FaceExplanation]:
    """Each face's map with its region shares, the regions placed from the face's keypoints in its crop."""
    out = []
    for face, heatmap, class_id in zip(faces, maps, class_ids):
        masks, source = face_regions(framing.keypoints_in_crop(face, size) if face.landmarks else None, size)
        out.append(FaceExplanation(method, int(class_id), np.asarray(heatmap, np.float32),
                                   region_shares(heatmap, masks), source, size))
    return out


def heatmap_png_bytes(heatmap: np.ndarray, size: int) -> bytes:
    """The map as a ``size`` x ``size`` RGBA PNG to lay over the classified square: JET colours (as the
    video draws them), opacity rising with the value (clear where the map is 0), so that a page draws it
    over the photo as it is."""
    from fer_keras.explain.cams import resize_map
    from fer_keras.explain.overlay import colorize

    values = np.clip(resize_map(np.asarray(heatmap, np.float32), size, size), 0, 1)
    rgba = np.dstack([colorize(values), np.uint8(np.round(220 * values))])
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if not ok:
        raise RuntimeError("OpenCV could not encode the heatmap as PNG")
    return data.tobytes()


def _probabilities(classes: Sequence[str], p: np.ndarray) -> dict[str, float]:
    return {c: round(float(v), 5) for c, v in zip(classes, p)}


def face_record(classes: Sequence[str], face: Face, framing: Framing, probabilities: np.ndarray, *,
                track: int | None = None, smoothed: np.ndarray | None = None,
                explanation: FaceExplanation | None = None, heatmap_png: bool = False) -> dict:
    """The one JSON record of an analysed face, whichever path analysed it.

    ``box``, ``score`` and ``landmarks`` are the detection; ``crop`` the square that was classified
    (``[x, y, side, side]``, with ``crop_angle`` where it was turned); ``emotion`` the label (of the
    smoothed probabilities where a track smooths them); ``track`` and ``smoothed`` for a face followed
    over frames; ``explanation`` where this face was explained (with ``heatmap_png``, base64, on request).
    """
    record = {**face.to_json(), "crop": list(framing.region(face))}
    angle = framing.angle(face)
    if angle:
        record["crop_angle"] = round(angle, 2)
    label_from = smoothed if smoothed is not None else probabilities
    record["emotion"] = classes[int(np.argmax(label_from))]
    record["probabilities"] = _probabilities(classes, probabilities)
    if track is not None:
        record["track"] = int(track)
    if smoothed is not None:
        record["smoothed"] = _probabilities(classes, smoothed)
    if explanation is not None:
        record["explanation"] = explanation.to_json(classes, heatmap_png)
    return record
