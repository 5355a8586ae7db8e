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
    get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
    prediction_log_pb2, prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.local.batching import Batcher, BatchingOptions, batchable
from serving.local.registry import ModelRegistry, Servable, ServingError
from serving.local.tensors import check_and_convert, to_proto_field

log = logging.getLogger("serving.local")
DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


DEFAULT_MAX_BATCH = 4096


def run_predict(servable: Servable, request: predict_pb2.PredictRequest,
                max_batch: int = DEFAULT_MAX_BATCH, batcher_for=None) -> predict_pb2.PredictResponse:
    """Runs one PredictRequest on a servable, with TF Serving's validation order and messages.

    Inputs whose first dimension exceeds ``max_batch`` are refused (INVALID_ARGUMENT)
    before any work, so one oversized request cannot stall the server.
    ``batcher_for(servable, signature_name)`` may return a server-side batcher.
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
    for alias in signature.inputs:
        dims = request.inputs[alias].tensor_shape.dim
        if dims and dims[0].size > max_batch:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"input {alias}: a batch of {dims[0].size} exceeds this server's limit of {max_batch}")
    inputs = {alias: check_and_convert(alias, i, request.inputs[alias], signature.inputs[alias])
              for i, alias in enumerate(sorted(signature.inputs))}
    batcher = batcher_for(servable, name) if batcher_for else None
    try:
        if batcher is not None:
            result = batcher(inputs)
        else:
            result = servable.module.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(err).splitlines()[0][:500]) from None
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
                 batching: BatchingOptions | None = None):
        self.registry = registry
        self.max_batch = max_batch
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
            return run_predict(self.registry.resolve(request.model_spec), request, self.max_batch, self.batcher_for)
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
    """

    def __init__(self, config: model_server_config_pb2.ModelServerConfig, host: str = "127.0.0.1", port: int = 8500,
                 poll_seconds: float = 1.0, max_workers: int = 16, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 max_batch: int = DEFAULT_MAX_BATCH, batching: BatchingOptions | None = None):
        self.registry = ModelRegistry(config, poll_seconds, warmup=replay_warmup)
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.registry, max_batch, batching), self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.registry), self._server)
        self.host = host
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port} (in use?)")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "LocalServer":
        """Starts serving; models load in the background and answer once available."""
        self._server.start()
        self.registry.start()
        return self

    def stop(self, grace: float = 5.0) -> None:
        """Stops accepting requests, lets running ones finish for ``grace`` seconds, stops polling."""
        self._server.stop(grace).wait()
        self.registry.stop()

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)


__all__ = ["LocalServer", "PredictionServicer", "ModelServicer", "run_predict", "replay_warmup"]
