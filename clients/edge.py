"""A LiteRT file in the place of the model server: the calls the video client and the analysis service
make of an :class:`~clients.client.EmotionClient`, answered on this machine by a file written with
``python -m fer_keras.export --format litert`` (no server, no TensorFlow Serving, no gRPC)."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from clients.client import Prediction, SignatureMismatch, as_uint8_faces


class LiteRTClient:
    """Classifies faces with a LiteRT file; explanations are not in such a file (explain with a local
    ``.keras`` model instead, ``--explain-model``, or not at all).

    Args:
        path: the ``.tflite`` file (its manifest ``NAME.json`` beside it).
        max_batch: most faces per interpreter call.
        threads: the interpreter's threads.
    """

    def __init__(self, path: str | Path, max_batch: int = 64, threads: int = 2):
        from fer_keras.loading import LiteRTClassifier

        self.path = Path(path)
        self._model = LiteRTClassifier(self.path, threads)
        self.model = self.path.stem
        self.classes = tuple(self._model.class_names)
        self.max_batch = max_batch
        self.quantize = self._model.quantize
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="litert")  # the interpreter runs one call at a time

    @property
    def face_size(self) -> int:
        return int(self._model.input_shape[1])

    def predict(self, faces: np.ndarray) -> Prediction:
        faces = as_uint8_faces(faces)
        if faces.ndim != 4 or faces.shape[1:3] != (self.face_size, self.face_size):
            raise ValueError(f"{self.path} takes faces [N, {self.face_size}, {self.face_size}, 1]; "
                             f"got {list(faces.shape)}")
        if faces.shape[-1] == 3:  # RGB crops: the BT.601 grey the models use
            faces = np.round(faces.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
            faces = faces.astype(np.uint8)[..., None]
        probabilities = self._model.predict(faces, batch_size=self.max_batch)["probabilities"]
        return Prediction(probabilities, probabilities.argmax(1), self.classes)

    def predict_async(self, faces: np.ndarray) -> Future:
        return self._pool.submit(self.predict, faces)

    def explanation_signature(self, method: str) -> str:
        raise SignatureMismatch(f"{self.path} is a LiteRT file and carries no explanation ({method}): use "
                                "--explain none, or --explain-model MODEL.keras to explain on this machine")

    def explain(self, faces: np.ndarray, method: str = "gradcam"):
        self.explanation_signature(method)

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def __enter__(self) -> LiteRTClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
