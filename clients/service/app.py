"""The HTTP face of the analysis service (FastAPI on uvicorn): ``POST /v1/analyze``, the models, the
streams, health, the OpenAPI description and the browser page.

Every door checks before it spends: a body's declared length and the analyses in flight are checked
before a byte of the body is read (413; 503 with Retry-After when saturated), the body is counted as it
arrives and must keep arriving (413 past the limit, 408 for a client that stalls), the image's declared
size is read from its header before a pixel is decoded (413), and every error is one JSON object
``{"error": {"status", "code", "message"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from clients.client import ClientError
from clients.service.analyst import Analyst, RequestError
from fer_keras.detection import ImageTooLarge, NotAnImage, decode_image

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("clients.service")


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the service.

    Attributes:
        max_bytes: largest request body (an image of this size, base64 in JSON included).
        max_pixels: largest image, width times height, read from its header before decoding.
        workers: analyses run at once (the machine's cores).
        queue: analyses that may wait for a worker; a request beyond ``workers + queue`` gets 503.
        body_timeout: seconds a client may go without sending more of its body.
        retry_after: seconds a 503 asks the client to wait.
    """

    max_bytes: int = 10 * 2**20
    max_pixels: int = 25_000_000
    workers: int = 2
    queue: int = 30
    body_timeout: float = 10.0
    retry_after: int = 1

    def __post_init__(self):
        if min(self.max_bytes, self.max_pixels, self.workers) < 1 or self.queue < 0 or self.body_timeout <= 0:
            raise ValueError(f"limits must be positive: {self}")


class ServiceError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "code": code, "message": message}}, status, headers=headers)


class Admission:
    """ASGI middleware in front of ``POST /v1/analyze``: refuses before reading a body that is declared too
    large or that would find no room (analyses in flight at the limit), then counts the body as it
    arrives and times out a client that stops sending."""

    def __init__(self, app, limits: Limits, path: str = "/v1/analyze"):
        self.app, self.limits, self.path = app, limits, path
        self.in_flight = 0  # changed only on the event loop's thread

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        limits = self.limits
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limits.max_bytes):
            return await error_response(413, "body_too_large", f"the body declares {declared.decode()[:20]} bytes; "
                                        f"at most {limits.max_bytes:,} are accepted")(scope, receive, send)
        if self.in_flight >= limits.workers + limits.queue:
            return await error_response(
                503, "saturated", f"{self.in_flight} analyses are in flight, the most this service takes; retry",
                {"Retry-After": str(limits.retry_after)})(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), limits.body_timeout)
            except TimeoutError:
                raise ServiceError(408, "body_timeout", f"no part of the body arrived for {limits.body_timeout:g} s; "
                                   "send the whole body at once") from None
            received += len(message.get("body", b""))
            if received > limits.max_bytes:
                raise ServiceError(413, "body_too_large", f"the body is over {limits.max_bytes:,} bytes")
            return message

        self.in_flight += 1
        try:
            await self.app(scope, counted, send)
        finally:
            self.in_flight -= 1


ANALYZE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary", "description": "a JPEG, PNG or TIFF photo"},
            "model": {"type": "string"}, "stream": {"type": "string"}, "explain": {"type": "string"}}}},
        "application/json": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "byte", "description": "the photo's bytes in base64 (a data: URL "
                                                                        "prefix is allowed)"},
            "model": {"type": "string"}, "stream": {"type": "string"}, "explain": {"type": "string"},
            "heatmaps": {"type": "boolean"}}}},
        "image/*": {"schema": {"type": "string", "format": "binary"}},
    },
}
ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "status": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"}}}}}
FACE_SCHEMA = {"type": "object", "properties": {
    "box": {"type": "array", "items": {"type": "integer"}, "description": "x, y, width, height in pixels"},
    "score": {"type": "number"},
    "landmarks": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer"}}},
    "crop": {"type": "array", "items": {"type": "integer"}, "description": "the square classified: x, y, side, side"},
    "emotion": {"type": "string", "description": "the label (of the smoothed probabilities in a stream)"},
    "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
    "track": {"type": "integer", "description": "in a stream: the face's track id"},
    "smoothed": {"type": "object", "additionalProperties": {"type": "number"}},
    "explanation": {"type": "object", "properties": {
        "method": {"type": "string"}, "class": {"type": "string"}, "blank_map": {"type": "boolean"},
        "regions_from": {"type": "string"}, "regions": {"type": "object", "additionalProperties": {"type": "number"}},
        "heatmap_png": {"type": "string", "format": "byte",
                        "description": "RGBA PNG of the map, to be drawn over the crop square"},
        "frames_old": {"type": "integer", "description": "in a stream: frames since the map was made"}}}}}
ANALYZE_RESPONSES = {
    200: {"description": "the faces found", "content": {"application/json": {"schema": {
        "type": "object", "properties": {
        "model": {"type": "string"}, "classes": {"type": "array", "items": {"type": "string"}},
        "stream": {"type": "string", "nullable": True}, "frame": {"type": "integer", "nullable": True},
        "image": {"type": "object"}, "explain": {"type": "string", "nullable": True},
        "faces": {"type": "array", "items": FACE_SCHEMA}, "timing_ms": {"type": "object"}}}}}},
    **{code: {"description": text, "content": {"application/json": {"schema": ERROR_SCHEMA}}} for code, text in (
        (400, "a malformed request (no image, bad base64, a bad stream id or explanation method)"),
        (404, "the model is not served here"), (408, "the body stopped arriving"),
        (409, "the stream analyses with another model"),
        (413, "the body or the image's declared size is over the limit"),
        (415, "not an image, or an unknown body type"),
        (422, "an image that cannot be decoded (truncated or damaged)"),
        (503, "saturated, or the model server is unavailable: retry after Retry-After seconds"))},
}


def create_app(analyst: Analyst, limits: Limits | None = None) -> FastAPI:
    """The service's ASGI application (serve it with uvicorn, as ``python -m clients.service`` does)."""
    limits = limits or Limits()
    pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="analysis")

    @asynccontextmanager
    async def lifespan(app):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="fer-keras analysis service", version="1", lifespan=lifespan,
                  description="Faces, emotions and explanations of photos and camera frames (fer-keras).")
    app.state.analyst, app.state.limits, app.state.pool = analyst, limits, pool

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, err: ServiceError):
        return error_response(err.status, err.code, err.message, err.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException):
        return error_response(err.status_code, "http", str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(422, "invalid_parameter", f"{where}: {first.get('msg', 'invalid')}")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", summary="liveness and what is served")
    async def health():
        return {"status": "ok", "models": [m["name"] for m in analyst.models()], "streams": len(analyst.streams)}

    @app.get("/v1/models", summary="the served models, their classes and explanation methods")
    async def models():
        return {"models": analyst.models()}

    @app.delete("/v1/streams/{stream}", summary="forget a stream's tracks now (they expire when idle anyway)",
                status_code=204, responses={404: {"description": "no such stream"}})
    async def drop_stream(stream: str):
        if not analyst.streams.drop(stream):
            raise ServiceError(404, "no_stream", f"no stream {stream!r:.80} is held")
        return Response(status_code=204)

    @app.post("/v1/analyze", summary="faces, emotions and explanations of one image", openapi_extra={
        "requestBody": ANALYZE_BODY}, responses=ANALYZE_RESPONSES)
    async def analyze(request: Request, model: str | None = None, stream: str | None = None,
                      explain: str | None = None, heatmaps: bool = True):
        """Send the image as multipart field ``image``, as JSON ``{"image": "<base64>"}`` or as the raw body
        (``Content-Type: image/jpeg``). ``model`` picks a served model (``GET /v1/models``); ``stream`` names
        a camera stream whose frames keep their face tracks and smoothing; ``explain`` a served explanation
        method (``gradact-fused``, ``gradcam``, ...) whose map comes back as a PNG (``heatmaps=false``:
        region shares only). Parameters go in the query string or beside the image in the body."""
        data, fields = await _read_image(request, limits)
        model = fields.get("model", model)
        stream = fields.get("stream", stream)
        explain = fields.get("explain", explain)
        heatmaps = _flag(fields.get("heatmaps", heatmaps))

        def work():
            image = decode_image(data, "the image", limits.max_pixels)
            return analyst.analyze(image, model=model, stream=stream, explain=explain, heatmaps=heatmaps)

        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        except ImageTooLarge as err:
            raise ServiceError(413, "image_too_large", str(err)) from None
        except NotAnImage as err:
            raise ServiceError(415, "not_an_image", str(err)) from None
        except RequestError as err:
            raise ServiceError(err.status, err.code, str(err)) from None
        except ClientError as err:
            log.warning("model server: %s", err)
            raise ServiceError(503, "model_server_unavailable", f"the model server did not answer: {err}",
                               {"Retry-After": str(max(limits.retry_after, 2))}) from None
        except ValueError as err:  # decode_image: a damaged or truncated image
            raise ServiceError(422, "undecodable_image", str(err)) from None

    return Admission(app, limits)


def _flag(value) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ServiceError(400, "bad_parameter", f"heatmaps must be true or false; got {value!r:.40}")


async def _read_image(request: Request, limits: Limits) -> tuple[bytes, dict[str, str]]:
    """The image bytes and the text fields sent beside them, from multipart, JSON or a raw image body."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=16, max_part_size=limits.max_bytes)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise ServiceError(400, "no_image", "the multipart body has no file field 'image'")
        data = await upload.read()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    elif kind == "application/json":
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ServiceError(400, "bad_json", f"the body is not JSON: {err}") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("image"), str):
            raise ServiceError(400, "no_image", 'the JSON body must be an object with "image": "<base64>"')
        text = payload.pop("image")
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ServiceError(400, "bad_base64", '"image" is not valid base64') from None
        fields = {k: v for k, v in payload.items() if isinstance(v, (str, bool))}
    elif kind.startswith("image/") or kind == "application/octet-stream":
        data, fields = await request.body(), {}
    else:
        raise ServiceError(415, "unsupported_body", f"send multipart/form-data, application/json or image/*; "
                           f"got {kind or 'no Content-Type'!r:.60}")
    if not data:
        raise ServiceError(400, "empty_image", "the image is empty (0 bytes)")
    return data, fields
