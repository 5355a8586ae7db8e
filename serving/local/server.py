"""A gRPC server speaking TensorFlow Serving's API on its official protos.

``PredictionService`` (Predict, GetModelMetadata) and ``ModelService``
(GetModelStatus) behave as TF Serving's do, with its status codes and
messages, so a client cannot tell this server from the real container. It is
for development, tests and single-machine use: production uses the
``tensorflow/serving`` container (see serving/README.md).
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.local.batching import Batcher, BatchingOptions, batchable
from serving.local.registry import ModelRegistry, Servable, ServingError
from serving.local.tensors import check_and_convert, check_declared, to_proto_field

log = logging.getLogger("serving.local")
DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


DEFAULT_MAX_BATCH = 4096
# Memory bounds (bytes of decoded request tensors). 4,096 float32 64x64 faces are 64 MiB.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_BYTES = 256 * 1024 * 1024
# Faces run through the model at once: activations grow with the batch (GiMeFive: about 3 MB a face at
# 64x64), so a large request runs in chunks, and at most RUN_SLOTS chunks run at a time.
RUN_CHUNK = 64
RUN_SLOTS = 2


class MemoryBudget:
    """Bytes of request tensors held by the requests in flight, with a limit.

    A request waits up to ``wait_seconds`` for room, then is refused with RESOURCE_EXHAUSTED.
    Each request is counted at twice its tensors' bytes (the decoded array and TensorFlow's copy).
    """

    def __init__(self, limit: int, wait_seconds: float = 2.0):
        self.limit, self.wait_seconds, self.used = limit, wait_seconds, 0
        self._cond = threading.Condition()

    def acquire(self, nbytes: int) -> None:
        if nbytes > self.limit:
            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"the request needs {nbytes} bytes, above this server's limit of {self.limit} bytes "
                               f"for all requests in flight (--max_inflight_bytes)")
        with self._cond:
            if not self._cond.wait_for(lambda: self.used + nbytes <= self.limit, timeout=self.wait_seconds):
                raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                   f"requests in flight hold {self.used} of {self.limit} bytes (--max_inflight_bytes); "
                                   f"this one needs {nbytes}: retry later")
            self.used += nbytes

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.used -= nbytes
            self._cond.notify_all()


_RUN_SLOTS = threading.Semaphore(RUN_SLOTS)


def _tf_error_text(err: Exception) -> str:
    """The informative part of a TensorFlow error: for graph errors the cause, not 'Graph execution error:'."""
    text = str(getattr(err, "message", err)).replace("<stack traces unavailable>", "")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Graph execution error", "Detected at node", "File \"",
                                                                "[[", "Traceback"))]
    return (" ".join(useful[-2:]) if useful else (lines[0] if lines else type(err).__name__))[:500]


def _run_signature(function, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Runs a signature in chunks of RUN_CHUNK along the batch dimension, at most RUN_SLOTS at a time."""
    sizes = {v.shape[0] for v in inputs.values() if v.ndim}
    n = sizes.pop() if len(sizes) == 1 else None
    if n is None or n <= RUN_CHUNK:
        with _RUN_SLOTS:
            return {k: np.asarray(v) for k, v in function(**{k: tf.constant(v) for k, v in inputs.items()}).items()}
    parts = []
    for start in range(0, n, RUN_CHUNK):
        with _RUN_SLOTS:
            out = function(**{k: tf.constant(v[start:start + RUN_CHUNK]) for k, v in inputs.items()})
            parts.append({k: np.asarray(v) for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) if parts[0][k].ndim else parts[0][k] for k in parts[0]}


def run_predict(servable: Servable, request: predict_pb2.PredictRequest,
                max_batch: int = DEFAULT_MAX_BATCH, batcher_for=None, budget: MemoryBudget | None = None,
                max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> predict_pb2.PredictResponse:
    """Runs one PredictRequest on a servable, with TF Serving's validation order and messages.

    Before anything is decoded, each input's declared shape is checked against
    the signature, ``max_batch``, ``max_request_bytes`` and the data actually
    sent (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED above the byte limit); the
    request then holds its bytes of ``budget`` (the memory of all requests in
    flight) until it is answered. ``batcher_for(servable, signature_name)`` may
    return a server-side batcher.
    """
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = servable.signature_defs.get(name)
    if signature is None:
        raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, f'Serving signature key "{name}" not found.')
    sent, expected = set(request.inputs), set(signature.inputs)
    if sent != expected:
        if len(sent) == len(expected):
            alias = sorted(sent - expected)[0]
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input tensor alias not found in signature: {alias}. "
                               f"Inputs expected to be in the set {{{','.join(sorted(expected))}}}.")
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"input size does not match signature: {len(sent)}!={len(expected)} "
                           f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                           f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                           f"Missing but required: {{{','.join(sorted(expected - sent))}}}.")
    outputs = list(request.output_filter) or list(signature.outputs)
    for alias in request.output_filter:
        if alias not in signature.outputs:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                               f"{{{','.join(sorted(signature.outputs))}}}.")
    if len(set(outputs)) != len(outputs):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias")
    for i, alias in enumerate(sorted(signature.inputs)):
        if request.inputs[alias].dtype != signature.inputs[alias].dtype:
            check_and_convert(alias, i, request.inputs[alias], signature.inputs[alias])  # TF Serving's dtype error
    nbytes = 2 * sum(check_declared(alias, request.inputs[alias], signature.inputs[alias], max_batch, max_request_bytes)
                     for alias in signature.inputs)
    if budget is not None:
        budget.acquire(nbytes)
    try:
        inputs = {alias: check_and_convert(alias, i, request.inputs[alias], signature.inputs[alias])
                  for i, alias in enumerate(sorted(signature.inputs))}
        batcher = batcher_for(servable, name) if batcher_for else None
        try:
            result = batcher(inputs) if batcher is not None else _run_signature(servable.module.signatures[name], inputs)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, _tf_error_text(err)) from None
    finally:
        if budget is not None:
            budget.release(nbytes)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = name
    for alias in outputs:
        response.outputs[alias].CopyFrom(to_proto_field(np.asarray(result[alias])))
    return response


def replay_warmup(servable: Servable) -> None:
    """Replays a version's ``assets.extra/tf_serving_warmup_requests`` before it serves, as TF Serving does."""
    path = servable.path / WARMUP_FILE
    if not path.is_file():
        return
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        log_entry = prediction_log_pb2.PredictionLog.FromString(record)
        if log_entry.HasField("predict_log"):
            run_predict(servable, log_entry.predict_log.request)


def _abort(context: grpc.ServicerContext, err: ServingError):
    context.abort(err.code, err.message)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry, max_batch: int = DEFAULT_MAX_BATCH,
                 batching: BatchingOptions | None = None, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
                 max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES):
        self.registry = registry
        self.max_batch = max_batch
        self.max_request_bytes = max_request_bytes
        self.budget = MemoryBudget(max_inflight_bytes)
        self.batching = batching
        self._batchers: dict[tuple[str, int, str], Batcher | None] = {}
        self._lock = threading.Lock()

    def batcher_for(self, servable: Servable, signature: str) -> Batcher | None:
        """The batcher of a servable's signature (created on first use), or None without batching."""
        if self.batching is None:
            return None
        key = (servable.name, servable.version, signature)
        with self._lock:
            if key not in self._batchers:
                sig = servable.signature_defs[signature]
                self._batchers[key] = (Batcher(servable.module.signatures[signature], self.batching)
                                       if batchable(sig) else None)
            return self._batchers[key]

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        try:
            return run_predict(self.registry.resolve(request.model_spec), request, self.max_batch, self.batcher_for,
                               self.budget, self.max_request_bytes)
        except ServingError as err:
            _abort(context, err)

    def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            if not request.HasField("model_spec"):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
            if not request.metadata_field:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                   "GetModelMetadataRequest must specify at least one metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is not supported")
            servable = self.registry.resolve(request.model_spec)
        except ServingError as err:
            _abort(context, err)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signature_map)
        return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def GetModelStatus(self, request, context):  # noqa: N802
        spec = request.model_spec
        version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
        try:
            if spec.WhichOneof("version_choice") == "version_label":
                version = self.registry.resolve(spec).version
            states = self.registry.version_states(spec.name, version)
        except ServingError as err:
            _abort(context, err)
        response = get_model_status_pb2.GetModelStatusResponse()
        for v, state, error in states:
            status = response.model_version_status.add(version=v, state=state)
            status.status.error_code = 0 if not error else 13  # OK, or INTERNAL with the load error
            status.status.error_message = error
        return response


class LocalServer:
    """TF Serving's gRPC API over a :class:`ModelRegistry`.

    Args:
        config: the models to serve.
        host: interface to bind (loopback unless told otherwise).
        port: gRPC port; 0 picks a free one (see ``port`` after ``start``).
        poll_seconds: base-path polling interval.
        max_workers: request threads.
        max_message_bytes: largest request or response accepted.
        max_batch: largest batch a Predict call may carry.
        batching: server-side batching of concurrent requests (None: off).
        max_request_bytes: largest decoded request tensor (RESOURCE_EXHAUSTED above).
        max_inflight_bytes: bytes all requests in flight may hold together (each counted at twice
            its tensors' bytes); a request that finds no room within 2 s gets RESOURCE_EXHAUSTED.
        ssl_config: TF Serving's SSLConfig (``serving.config.read_ssl_config``): serve over TLS
            (mutual TLS with ``client_verify``); None serves plaintext.
        allow_labels_for_unavailable: TF Serving's ``--allow_version_labels_for_unavailable_models``:
            a config update may give a *new* label to a version not yet available.
        rest_port: also serve TF Serving's REST API on this port (``serving.local.rest``; 0 picks a
            free one, None: no REST), on the same host.
    """

    def __init__(self, config: model_server_config_pb2.ModelServerConfig, host: str = "127.0.0.1", port: int = 8500,
                 poll_seconds: float = 1.0, max_workers: int = 16, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_batch: int = DEFAULT_MAX_BATCH, batching: BatchingOptions | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
                 ssl_config=None, rest_port: int | None = None, allow_labels_for_unavailable: bool = False):
        self.registry = ModelRegistry(config, poll_seconds, warmup=replay_warmup,
                                      allow_labels_for_unavailable=allow_labels_for_unavailable)
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
        self.servicer = PredictionServicer(self.registry, max_batch, batching, max_request_bytes, max_inflight_bytes)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.servicer, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.registry), self._server)
        self.host = host
        if ssl_config is not None:
            from serving.config import server_credentials

            self.port = self._server.add_secure_port(f"{host}:{port}", server_credentials(ssl_config))
        else:
            self.port = self._server.add_insecure_port(f"{host}:{port}")
        self.tls = ssl_config is not None
        self.rest = None
        if rest_port is not None:
            from serving.local.rest import RestServer

            self.rest = RestServer(self.servicer, self.registry, host, rest_port, max_message_bytes)
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port} (in use?)")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "LocalServer":
        """Starts serving; models load in the background and answer once available."""
        self._server.start()
        if self.rest is not None:
            self.rest.start()
        self.registry.start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stops accepting requests, lets running ones finish for ``grace`` seconds, stops polling."""
        if self.rest is not None:
            self.rest.stop()
        self._server.stop(grace).wait()
        self.registry.stop()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)


__all__ = ["LocalServer", "PredictionServicer", "ModelServicer", "run_predict", "replay_warmup"]
