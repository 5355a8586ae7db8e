"""The analysis of one image for the HTTP service: detect, track (for a named stream), classify and
explain through the model server, and write the faces' JSON (``fer_keras.explain.analysis.face_record``,
the record the video client and ``fer_keras.explain`` write too)."""

from __future__ import annotations

import time

import numpy as np

from clients.client import ClientError, EmotionClient
from clients.settings import STREAM_DETECT_EVERY, AnalyzerConfig
from clients.streams import StreamState, StreamTable
from clients.tracking import appearance
from fer_keras.detection import Detector, Face, make_detector
from fer_keras.explain.analysis import FaceExplanation, Framing, explain_faces, face_record
from fer_keras.explain.methods import DEFAULT_METHOD, SERVED_METHODS


class RequestError(ValueError):
    """A request the service cannot answer as asked; ``status`` is its HTTP status."""

    status, code = 400, "bad_request"


class UnknownModel(RequestError):
    status, code = 404, "unknown_model"


class StreamConflict(RequestError):
    status, code = 409, "stream_conflict"


class Analyst:
    """Analyses images with the served models, one :class:`StreamState` per named stream.

    Args:
        clients: the served models by name (each an :class:`EmotionClient`); the first is the default.
        config: detection, framing, tracking and smoothing settings (the video client's; by default its
            defaults with detection every ``STREAM_DETECT_EVERY`` frames of a stream).
        detector: the face detector (default ``config.detector``); its detections run one at a time.
        idle_seconds: a stream without a frame this long is forgotten.
        max_streams: streams held at once (the longest idle one makes room).
        max_history: smoothed results kept per track and ended tracks kept per stream.
    """

    def __init__(self, clients: dict[str, EmotionClient], config: AnalyzerConfig | None = None,
                 detector: Detector | None = None, idle_seconds: float = 120.0, max_streams: int = 256,
                 max_history: int = 300):
        if not clients:
            raise ValueError("the service needs at least one served model")
        self.clients = dict(clients)
        self.default = next(iter(self.clients))
        self.config = config or AnalyzerConfig(detect_every=STREAM_DETECT_EVERY)
        self.detector = detector or make_detector(self.config.detector)
        score = self.config.confirm_score
        self.min_score = score if score is not None else getattr(self.detector, "confirm_score", 0.0)
        self.framing = Framing(self.config.margin, self.config.align, self.config.level)
        self.streams = StreamTable(lambda: StreamState(self.config, self.min_score, max_history), idle_seconds,
                                   max_streams)

    def models(self) -> list[dict]:
        out = []
        for name, c in self.clients.items():
            methods = [m for m in SERVED_METHODS if _serves(c, m)]
            out.append({"name": name, "classes": list(c.classes), "face_size": c.face_size,
                        "default": name == self.default, "explanations": methods,
                        "default_explanation": DEFAULT_METHOD if DEFAULT_METHOD in methods else None})
        return out

    def _client(self, model: str | None) -> tuple[str, EmotionClient]:
        name = model or self.default
        if name not in self.clients:
            raise UnknownModel(f"model {name!r} is not served here; served: {', '.join(self.clients)}")
        return name, self.clients[name]

    def _method(self, client: EmotionClient, explain: str | None) -> str | None:
        if explain in (None, "", "none"):
            return None
        if explain not in SERVED_METHODS:
            raise RequestError(f"explain must be one of {', '.join(SERVED_METHODS)} or none; got {explain!r:.60}")
        if not _serves(client, explain):
            raise RequestError(f"model {client.model!r} has no {explain} signature here")
        return explain

    def analyze(self, rgb: np.ndarray, *, model: str | None = None, stream: str | None = None,
                explain: str | None = None, heatmaps: bool = True) -> dict:
        """Faces, emotions and (with ``explain``, a served method) explanations of one RGB image.

        With ``stream``, the image is that stream's next frame: faces are detected every
        ``config.detect_every`` frames and on every shot cut, and tracked in between (as the video
        client does: a cut ends every track), keep track
        ids and smoothed probabilities from frame to frame, and each track's explanation is refreshed
        every ``config.explain_every`` frames (between refreshes the latest one is returned, with its
        age in frames). Without, every face found is classified and, on request, explained.
        """
        name, client = self._client(model)
        method = self._method(client, explain)
        times = {}
        start = time.perf_counter()
        if stream is None:
            found = self._detect(rgb, times)
            faces = [f for f in found if f.score >= self.min_score]
            crops = self.framing.crops(rgb, faces, client.face_size)
            probabilities, explained = self._classify(client, crops, faces, list(range(len(faces))), method, times)
            records = [face_record(client.classes, f, self.framing, p, explanation=e, heatmap_png=heatmaps)
                       for f, p, e in zip(faces, probabilities, explained)]
            frame = None
        else:
            try:
                state = self.streams.get(stream)
            except ValueError as err:
                raise RequestError(str(err)) from None
            with state.lock:  # the frame's number, and whether it is a detection frame
                if state.owner is None:
                    state.owner = name
                elif state.owner != name:
                    raise StreamConflict(f"stream {stream!r} analyses with model {state.owner!r}, not {name!r}: "
                                         "start a new stream id for another model")
                frame = state.next_frame()
                cut = state.is_cut(rgb)
                if cut:
                    state.cut()
                detect = (cut or frame - state.last_detection >= self.config.detect_every
                          or not state.tracker.tracks)
                if detect:
                    state.last_detection = frame
            found = self._detect(rgb, times) if detect else None  # outside the lock: the next frame may go on
            with state.lock:
                records = self._track(state, client, rgb, found, frame, method, heatmaps, times)
        times["total"] = time.perf_counter() - start
        return {"model": name, "classes": list(client.classes), "stream": stream, "frame": frame,
                "image": {"width": int(rgb.shape[1]), "height": int(rgb.shape[0])},
                "explain": method, "faces": records,
                "timing_ms": {k: round(1000 * v, 2) for k, v in times.items()}}

    def _detect(self, rgb: np.ndarray, times: dict) -> list[Face]:
        start = time.perf_counter()
        found = self.detector.detect(rgb)
        times["detect"] = time.perf_counter() - start
        return found

    def _track(self, state: StreamState, client: EmotionClient, rgb: np.ndarray, found: list[Face] | None,
               frame: int, method: str | None, heatmaps: bool, times: dict) -> list[dict]:
        """Tracks (moved on at their velocities where ``found`` is None: no detection this frame),
        classifies, explains what is stale, smooths."""
        size = client.face_size
        start = time.perf_counter()
        if found is not None:
            looks = ([appearance(self.framing.crop(rgb, f, size)) for f in found]
                     if self.config.min_similarity > 0 else None)
            state.observe(frame, found, looks)
        live = state.live(frame)
        faces = [face for _, face in live]
        crops = self.framing.crops(rgb, faces, size)
        times["crop"] = time.perf_counter() - start
        stale = [i for i, (track, _) in enumerate(live) if state.stale(track, frame)] if method else []
        probabilities, explained = self._classify(client, crops, faces, stale, method, times)
        records = []
        for (track, face), p, fresh in zip(live, probabilities, explained):
            if fresh is not None:
                state.refreshed(track, frame, fresh)
            latest = track.explanation if method else None
            record = face_record(client.classes, face, self.framing, p, track=track.track_id,
                                 smoothed=state.smooth(track, p, frame), explanation=latest, heatmap_png=heatmaps)
            if latest is not None:
                record["explanation"]["frames_old"] = frame - track.heatmap_frame
            records.append(record)
        return records

    def _classify(self, client: EmotionClient, crops: np.ndarray, faces: list[Face], explain_rows: list[int],
                  method: str | None, times: dict) -> tuple[np.ndarray, list[FaceExplanation | None]]:
        """Probabilities of every crop; explanations of ``explain_rows`` (one served call gives both for
        them, one Predict call the others')."""
        explained: list[FaceExplanation | None] = [None] * len(crops)
        probabilities = np.zeros((len(crops), len(client.classes)), np.float32)
        rows = explain_rows if method else []
        explained_rows = set(rows)
        rest = [i for i in range(len(crops)) if i not in explained_rows]
        start = time.perf_counter()
        if rest:
            probabilities[rest] = client.predict(crops[rest]).probabilities
        times["classify"] = time.perf_counter() - start
        if rows:
            start = time.perf_counter()
            prediction, maps = client.explain(crops[rows], method)
            probabilities[rows] = prediction.probabilities
            for i, e in zip(rows, explain_faces(method, maps, prediction.class_ids, [faces[i] for i in rows],
                                                client.face_size, self.framing)):
                explained[i] = e
            times["explain"] = time.perf_counter() - start
        return probabilities, explained


def _serves(client: EmotionClient, method: str) -> bool:
    try:
        client.explanation_signature(method)
    except (ValueError, ClientError):  # not served by this export
        return False
    return True
