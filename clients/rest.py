"""A client of TF Serving's REST API (``--rest_api_port``), for where only HTTP gets through.

The same faces, checks and results as :class:`clients.client.EmotionClient`, over plain HTTP and
JSON: slower than gRPC (every grey level travels as text), needing nothing beyond the standard library.

    client = RestEmotionClient("http://127.0.0.1:8501", "gimefive")
    client.predict(faces).labels
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np

from clients.client import (
    ClientError,
    ModelNotFound,
    Prediction,
    ServerUnavailable,
    as_uint8_faces,
)
from fer_keras.config import DEFAULT_MODEL


class RestEmotionClient:
    """Classifies faces through ``POST /v1/models/{model}[/versions/{v}|/labels/{l}]:predict``.

    Args:
        url: the REST endpoint, e.g. ``http://127.0.0.1:8501``.
        model: served model name.
        version / version_label: which version to ask for (default: the latest).
        timeout: per-call deadline in seconds.
        max_batch: most faces per call.
    """

    def __init__(self, url: str = "http://127.0.0.1:8501", model: str = DEFAULT_MODEL, *, version: int | None = None,
                 version_label: str | None = None, timeout: float = 30.0, max_batch: int = 64):
        self.url, self.model, self.timeout, self.max_batch = url.rstrip("/"), model, timeout, max_batch
        self.path = f"/v1/models/{model}" + (f"/versions/{version}" if version else
                                             f"/labels/{version_label}" if version_label else "")
        classes = self._call(self.path + ":predict", {"signature_name": "labels", "inputs": {}}).get("outputs")
        self.classes = tuple(classes) if isinstance(classes, list) else tuple(classes["class_names"])

    def _call(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            message = json.loads(err.read() or b"{}").get("error", err.reason)
            kind = ModelNotFound if err.code == 404 else ClientError
            raise kind(f"model {self.model!r} at {self.url}: HTTP {err.code}: {message}") from None
        except (urllib.error.URLError, OSError) as err:
            raise ServerUnavailable(f"{self.url}: {getattr(err, 'reason', err)}") from None

    def predict(self, faces: np.ndarray) -> Prediction:
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[..., None]
        faces = as_uint8_faces(faces)
        parts = []
        for start in range(0, len(faces), self.max_batch):
            out = self._call(self.path + ":predict", {"inputs": faces[start:start + self.max_batch].tolist()})
            parts.append(np.asarray(out["outputs"]["probabilities"], np.float32))
        probabilities = np.concatenate(parts) if parts else np.zeros((0, len(self.classes)), np.float32)
        return Prediction(probabilities, probabilities.argmax(1), self.classes)
