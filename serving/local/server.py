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
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_log_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving.local.batching import Batcher, BatchingOptions, batchable
from serving.local.predict import (  # noqa: F401  (the server's limits, imported from here by users)
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    RUN_CHUNK,
    RUN_SLOTS,
    MemoryBudget,
    run_predict,
)
from serving.local.registry import ModelRegistry, Servable, ServingError

log = logging.getLogger("serving.local")
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


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
        # (model, version, signature) -> (the servable, its batcher or None where the signature cannot batch)
        self._batchers: dict[tuple[str, int, str], tuple[Servable, Batcher | None]] = {}
        self._lock = threading.Lock()
        registry.unload_listeners.append(self._forget)

    def _forget(self, servable: Servable) -> None:
        """Stops and drops the batchers of an unloaded version: each holds its model's functions."""
        with self._lock:
            keys = [k for k, (owner, _) in self._batchers.items() if owner is servable]
            batchers = [self._batchers.pop(k)[1] for k in keys]
        for batcher in batchers:
            if batcher is not None:
                batcher.stop()

    def batcher_for(self, servable: Servable, signature: str) -> Batcher | None:
        """The batcher of a servable's signature (created on first use), or None without batching (and for
        a version unloaded since the request resolved it: it runs alone)."""
        if self.batching is None:
            return None
        key = (servable.name, servable.version, signature)
        with self._lock:
            if servable.unloaded:
                return None
            if key not in self._batchers or self._batchers[key][0] is not servable:
                sig = servable.signature_defs[signature]
                self._batchers[key] = (servable, Batcher(servable.module.signatures[signature], self.batching)
                                       if batchable(sig) else None)
            return self._batchers[key][1]

    def Predict(self, request, context):
        try:
            return run_predict(self.registry.resolve(request.model_spec), request, self.max_batch, self.batcher_for,
                               self.budget, self.max_request_bytes)
        except ServingError as err:
            _abort(context, err)

    def GetModelMetadata(self, request, context):
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

    def GetModelStatus(self, request, context):
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

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        host: str = "127.0.0.1",
        port: int = 8500,
        poll_seconds: float = 1.0,
        max_workers: int = 16,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_batch: int = DEFAULT_MAX_BATCH,
        batching: BatchingOptions | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT_BYTES,
        ssl_config=None,
        rest_port: int | None = None,
        allow_labels_for_unavailable: bool = False,
    ):
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

    def start(self) -> LocalServer:
        """Starts serving; models load in the background and answer once available.

        The versions found on disk are marked START before the port opens, so from the first
        request on, GetModelStatus tells a model still loading from one that is not served."""
        self.registry.discover()
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

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)


__all__ = ["LocalServer", "ModelServicer", "PredictionServicer", "replay_warmup", "run_predict"]
