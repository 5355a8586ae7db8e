"""One Predict on one servable, with TF Serving's validation order, messages and memory bounds.

The gRPC servicer (``serving.local.server``) and the REST API (``serving.local.rest``) both answer
through :func:`run_predict`, so the two cannot disagree.
"""

from __future__ import annotations

import threading

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from serving.local.registry import Servable, ServingError
from serving.local.tensors import check_and_convert, check_declared, to_proto_field

DEFAULT_SIGNATURE = "serving_default"
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
            result = (
                batcher(inputs) if batcher is not None else _run_signature(servable.module.signatures[name], inputs)
            )
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
