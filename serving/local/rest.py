"""TensorFlow Serving's REST API on the local server, as TF Serving's ``--rest_api_port`` serves it.

* ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict`` with a JSON body holding
  ``instances`` (row format: one entry per example; objects of named inputs when a signature has
  several) or ``inputs`` (columnar: the batch as one value, or an object of named inputs), and
  optionally ``signature_name``. Row requests are answered with ``predictions`` (a list, of objects
  when several outputs are returned), columnar ones with ``outputs``.
* ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]``: the versions' states, as GetModelStatus.
* ``GET /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``: the signature definitions.

Errors are ``{"error": "message"}`` with the HTTP status of the gRPC code. Predict goes through the
very checks and limits of the gRPC path (``run_predict``), so the two cannot disagree.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
)

from serving.local.predict import run_predict
from serving.local.registry import ServingError

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
                   r"(?P<suffix>:predict|/metadata)?$")
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401, grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409, grpc.StatusCode.ABORTED: 409, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def _spec(match) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=match["name"])
    if match["version"]:
        spec.version.value = int(match["version"])
    elif match["label"]:
        spec.version_label = match["label"]
    return spec


def _bad(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def _tensor(value, info, alias: str):
    """A JSON value as a TensorProto of the signature input's dtype."""
    dtype = tf.dtypes.as_dtype(info.dtype)
    try:
        if dtype.is_integer:  # range first: a cast would wrap 300 to 44
            raw = np.asarray(value, dtype=np.float64)
            if raw.size and (not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.rint(raw))
                             or raw.min() < dtype.min or raw.max() > dtype.max):
                raise _bad(f"input {alias}: values must be whole numbers from {dtype.min} to {dtype.max} "
                           f"for {dtype.name}")
        array = np.asarray(value, dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
    except (TypeError, ValueError, OverflowError) as err:
        raise _bad(f"input {alias}: cannot read the JSON value as {dtype.name} ({err})") from None
    return tf.make_tensor_proto(array)


def build_request(
    body: dict, spec: model_pb2.ModelSpec, signature_defs: dict
) -> tuple[predict_pb2.PredictRequest, bool]:
    """A PredictRequest from a REST body; also whether it was row format (``instances``)."""
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object with 'instances' or 'inputs'")
    if ("instances" in body) == ("inputs" in body):
        raise _bad("the body must hold exactly one of 'instances' (row format) and 'inputs' (columnar format)")
    request = predict_pb2.PredictRequest(model_spec=spec)
    name = body.get("signature_name") or "serving_default"
    request.model_spec.signature_name = name
    signature = signature_defs.get(name)
    if signature is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
    aliases = sorted(signature.inputs)
    row = "instances" in body
    data = body["instances"] if row else body["inputs"]
    if row:
        if not isinstance(data, list) or not data:
            raise _bad("'instances' must be a non-empty list, one entry per example")
        if len(aliases) == 1 and not isinstance(data[0], dict):
            columns = {aliases[0]: data}
        else:
            if not all(isinstance(d, dict) for d in data):
                raise _bad(f"with several inputs ({', '.join(aliases)}) each instance must be an object of them")
            columns = {a: [d.get(a) for d in data] for a in {k for d in data for k in d}}
    elif not aliases:  # a signature without inputs ('labels')
        columns = dict(data) if isinstance(data, dict) else {"": data}
    else:
        columns = data if isinstance(data, dict) and len(aliases) > 1 else {aliases[0]: data}
    for alias, value in columns.items():
        if alias not in signature.inputs:
            raise _bad(f"input tensor alias not found in signature: {alias}. "
                       f"Inputs expected to be in the set {{{','.join(aliases)}}}.")
        request.inputs[alias].CopyFrom(_tensor(value, signature.inputs[alias], alias))
    return request, row


def _json_value(proto) -> object:
    array = tf.make_ndarray(proto)
    if array.dtype == object:
        return np.vectorize(lambda b: b.decode() if isinstance(b, bytes) else b, otypes=[object])(array).tolist()
    return array.tolist()


def format_response(response: predict_pb2.PredictResponse, row: bool) -> dict:
    outputs = {alias: _json_value(tensor) for alias, tensor in response.outputs.items()}
    if not row:
        return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    if len(outputs) == 1:
        return {"predictions": next(iter(outputs.values()))}
    n = max((len(v) for v in outputs.values() if isinstance(v, list)), default=0)
    return {"predictions": [{k: (v[i] if isinstance(v, list) else v) for k, v in outputs.items()} for i in range(n)]}


class RestServer:
    """The REST API over a LocalServer's registry and PredictionServicer, on its own port and thread.

    Args:
        servicer: the gRPC PredictionServicer (its limits, budget and batching apply here too).
        registry: the models.
        host: interface to bind (loopback unless told otherwise).
        port: 0 picks a free one.
        max_body_bytes: largest request body accepted (413 above).
    """

    def __init__(self, servicer, registry, host: str = "127.0.0.1", port: int = 8501,
                 max_body_bytes: int = 256 * 1024 * 1024):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet: the gRPC side does not log per request either
                pass

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str):
                match = _PATH.match(self.path.split("?", 1)[0])
                if match is None:
                    return self._send(404, {"error": f"Malformed request: {method} {self.path}"})
                suffix = match["suffix"] or ""
                try:
                    if method == "POST" and suffix == ":predict":
                        length = int(self.headers.get("Content-Length") or 0)
                        if length > outer.max_body_bytes:
                            return self._send(413, {"error": f"the body of {length} bytes exceeds this server's limit "
                                                             f"of {outer.max_body_bytes}"})
                        try:
                            body = json.loads(self.rfile.read(length) or b"null")
                        except (json.JSONDecodeError, UnicodeDecodeError) as err:
                            raise _bad(f"JSON Parse error: {err}") from None
                        servable = registry.resolve(_spec(match))
                        request, row = build_request(body, _spec(match), servable.signature_defs)
                        response = run_predict(servable, request, servicer.max_batch, servicer.batcher_for,
                                               servicer.budget, servicer.max_request_bytes)
                        return self._send(200, format_response(response, row))
                    if method == "GET" and suffix == "/metadata":
                        servable = registry.resolve(_spec(match))
                        signature_map = get_model_metadata_pb2.SignatureDefMap()
                        for key, value in servable.signature_defs.items():
                            signature_map.signature_def[key].CopyFrom(value)
                        return self._send(
                            200,
                            {
                                "model_spec": {
                                    "name": servable.name,
                                    "signature_name": "",
                                    "version": str(servable.version),
                                },
                                "metadata": {"signature_def": json_format.MessageToDict(signature_map)},
                            },
                        )
                    if method == "GET" and not suffix:
                        spec = _spec(match)
                        version = spec.version.value if match["version"] else None
                        if match["label"]:
                            version = registry.resolve(spec).version
                        states = registry.version_states(spec.name, version)
                        names = get_model_status_pb2.ModelVersionStatus.State
                        return self._send(200, {"model_version_status": [
                            {"version": str(v), "state": names.Name(state),
                             "status": {"error_code": "OK" if not error else "INTERNAL", "error_message": error}}
                            for v, state, error in states]})
                    return self._send(405, {"error": f"{method} is not served at {self.path}"})
                except ServingError as err:
                    return self._send(HTTP_STATUS.get(err.code, 500), {"error": err.message})
                except Exception as err:  # never drop the connection without an answer
                    return self._send(500, {"error": f"{type(err).__name__}: {err}"[:500]})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

        self.max_body_bytes = max_body_bytes
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="rest")

    def start(self) -> RestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
