"""``EmotionClient``: batched emotion classification and Grad-CAM over TF Serving's gRPC API.

It works the same against the tensorflow/serving container and the local
server. On connect it reads ``GetModelMetadata`` and takes the input name,
dtype and face size from the signature, never from hard-coded names; it
learns the class names from the ``labels`` signature when the model has one.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fer_keras.config import DEFAULT_MODEL
from fer_keras.data.faces import as_uint8_faces

# A server that stops while requests are queued ends them with CANCELLED (measured in the soak run,
# benchmarks/soak.py); Predict has no side effects, so those are retried like UNAVAILABLE.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)
DEFAULT_CLASSES = {6: ("happiness", "surprise", "sadness", "anger", "disgust", "fear"),
                   7: ("happiness", "surprise", "sadness", "anger", "disgust", "fear", "neutral")}


class ClientError(RuntimeError):
    """The server cannot be used as asked; the message says why."""


class ServerUnavailable(ClientError):
    """The server did not answer (after retries)."""


class ModelNotFound(ClientError):
    """The server has no such model, version or label."""


class SignatureMismatch(ClientError):
    """The model's signature is not a face classifier this client can feed."""


@dataclass
class Prediction:
    """Classification of a batch: ``probabilities`` [N, K], ``class_ids`` [N] and their names."""

    probabilities: np.ndarray
    class_ids: np.ndarray
    classes: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        return [self.classes[i] for i in self.class_ids]


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: int
    size: int
    channels: int | None


def _encode(faces: np.ndarray) -> tensor_pb2.TensorProto:
    """A uint8 batch as a TensorProto (raw bytes: the fastest form for the server to read)."""
    return tensor_pb2.TensorProto(
        dtype=types_pb2.DT_UINT8,
        tensor_content=np.ascontiguousarray(faces, np.uint8).tobytes(),
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in faces.shape]
        ),
    )


def _decode(proto: tensor_pb2.TensorProto) -> np.ndarray:
    from tensorflow import (
        make_ndarray,  # imported lazily: only decoding needs TensorFlow here
    )

    return make_ndarray(proto)


class EmotionClient:
    """A connection to a served fer_keras model.

    Args:
        address: ``host:port`` of TF Serving's gRPC endpoint.
        model: served model name.
        version: a version number, or None for the latest / the label's.
        version_label: a version label such as "stable" or "canary".
        signature: the classification signature.
        timeout: per-call deadline in seconds.
        retries: extra attempts on UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED, with exponential backoff. The
            default 6 waits 0.2 + 0.4 + ... + 5 = 11.2 s in all, more than a server restart takes
            (4-5 s for the local server with the shipped model), so a restart costs no request.
        backoff: first backoff in seconds (doubles each retry, capped at 5 s).
        max_batch: most faces per Predict call; larger inputs are split.
        credentials: ``grpc.ssl_channel_credentials(...)`` for TLS, or None for plaintext.
        max_message_bytes: gRPC message limit for both directions.
        connect_timeout: how long to keep retrying the first metadata call (a server starting late).
    """

    def __init__(self, address: str = "127.0.0.1:8500", model: str = DEFAULT_MODEL, *, version: int | None = None,
                 version_label: str | None = None, signature: str = "serving_default", timeout: float = 10.0,
                 retries: int = 6, backoff: float = 0.2, max_batch: int = 64, credentials=None,
                 max_message_bytes: int = 64 * 1024 * 1024, connect_timeout: float = 30.0):
        self.address, self.model, self.signature = address, model, signature
        self.version, self.version_label = version, version_label
        self.timeout, self.retries, self.backoff, self.max_batch = timeout, retries, backoff, max_batch
        options = [("grpc.max_send_message_length", max_message_bytes),
                   ("grpc.max_receive_message_length", max_message_bytes)]
        self._channel = (grpc.secure_channel(address, credentials, options=options) if credentials
                         else grpc.insecure_channel(address, options=options))
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self.signatures = self._read_metadata(connect_timeout)
        self.input = self._validate(signature)
        self.has_gradcam = "gradcam" in self.signatures
        self.classes = self._read_classes()

    # -- set-up ------------------------------------------------------------------
    def _spec(self, request, signature: str) -> None:
        request.model_spec.name = self.model
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        elif self.version_label:
            request.model_spec.version_label = self.version_label

    def _call(self, method, request, attempts: int | None = None, deadline: float | None = None):
        """One RPC with retries on UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED (and NOT_FOUND while the model
        loads); other errors become ClientErrors."""
        attempts = self.retries + 1 if attempts is None else attempts
        delay = self.backoff
        for attempt in range(attempts):
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as err:
                code = err.code()
                last = attempt == attempts - 1 or (deadline is not None and time.monotonic() + delay > deadline)
                if not last and self._worth_retrying(code):
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                raise self._translate(err) from None

    def _worth_retrying(self, code: grpc.StatusCode) -> bool:
        """UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED; and NOT_FOUND while the model is loading, which is
        what a request that reaches a restarted server before its model has loaded is answered."""
        return code in RETRYABLE or (code == grpc.StatusCode.NOT_FOUND and self._loading_state()[0])

    def _translate(self, err: grpc.RpcError) -> ClientError:
        code, details = err.code(), err.details()
        if code in RETRYABLE:
            return ServerUnavailable(f"TF Serving at {self.address} is unreachable ({code.name}: {details})")
        if code == grpc.StatusCode.NOT_FOUND or (
            code == grpc.StatusCode.INVALID_ARGUMENT and "version label" in details
        ):
            return ModelNotFound(f"{self.address} does not serve {self._describe()}: {details}")
        if code == grpc.StatusCode.FAILED_PRECONDITION and "signature" in details:
            return SignatureMismatch(f"{self._describe()}: {details}")
        return ClientError(f"{self._describe()} at {self.address}: {code.name}: {details}")

    def _describe(self) -> str:
        version = f" version {self.version}" if self.version is not None else (
            f" label {self.version_label!r}" if self.version_label else "")
        return f"model {self.model!r}{version}"

    def _read_metadata(self, connect_timeout: float) -> dict:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request, "")
        deadline = time.monotonic() + connect_timeout
        attempts = max(self.retries + 1, int(connect_timeout / max(self.backoff, 0.05)) + 1)
        while True:
            try:
                response = self._call(self._stub.GetModelMetadata, request, attempts=attempts, deadline=deadline)
                break
            except ModelNotFound as err:
                # TF Serving answers NOT_FOUND both for a model it does not serve and for one
                # whose versions are still loading; its model status tells the two apart.
                loading, status = self._loading_state()
                if loading and time.monotonic() < deadline:
                    time.sleep(self.backoff)
                    continue
                raise ModelNotFound(f"{err} ({status})") from None
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def _loading_state(self) -> tuple[bool, str]:
        """Whether the model asked for has a version starting, loading or (by now) available, and its status
        in words: a request answered NOT_FOUND is then worth repeating."""
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request, "")
        request.model_spec.ClearField("signature_name")
        try:
            response = self._models.GetModelStatus(request, timeout=self.timeout)
        except grpc.RpcError as err:
            # A server gone again between the NOT_FOUND and this look (killed while it loaded) comes back
            # loading: worth repeating within the retries, as UNAVAILABLE is.
            return err.code() in RETRYABLE, f"model status: {err.details()}"
        states = get_model_status_pb2.ModelVersionStatus.State
        # AVAILABLE too: the version may have finished loading between the NOT_FOUND and this look.
        coming = (states.START, states.LOADING, states.AVAILABLE)
        loading = any(v.state in coming for v in response.model_version_status)
        words = ", ".join(f"version {v.version} {states.Name(v.state)}"
                          + (f" ({v.status.error_message})" if v.status.error_message else "")
                          for v in response.model_version_status)
        return loading, f"model status: {words or 'no versions'}"

    def _validate(self, signature: str) -> InputSpec:
        if signature not in self.signatures:
            raise SignatureMismatch(
                f"{self._describe()} has no signature {signature!r} (it has {sorted(self.signatures)})"
            )
        sig = self.signatures[signature]
        if len(sig.inputs) != 1:
            raise SignatureMismatch(
                f"signature {signature!r} takes {sorted(sig.inputs)}; expected one face batch input"
            )
        name, info = next(iter(sig.inputs.items()))
        dims = [d.size for d in info.tensor_shape.dim]
        if info.dtype != types_pb2.DT_UINT8 or len(dims) != 4 or dims[1] != dims[2] or dims[1] <= 0:
            raise SignatureMismatch(f"input {name!r} of {signature!r} is not a uint8 [N, S, S, C] face batch "
                                    f"(dtype enum {info.dtype}, shape {dims})")
        if "probabilities" not in sig.outputs:
            raise SignatureMismatch(
                f"signature {signature!r} has no 'probabilities' output (it has {sorted(sig.outputs)})"
            )
        return InputSpec(name, info.dtype, dims[1], dims[3] if dims[3] > 0 else None)

    def _read_classes(self) -> tuple[str, ...]:
        if "labels" in self.signatures:
            request = predict_pb2.PredictRequest()
            self._spec(request, "labels")
            names = _decode(self._call(self._stub.Predict, request).outputs["class_names"])
            return tuple(n.decode() for n in names)
        k = next(d.size for d in self.signatures[self.signature].outputs["probabilities"].tensor_shape.dim[-1:])
        if k not in DEFAULT_CLASSES:
            raise SignatureMismatch(f"the model has {k} classes and no 'labels' signature to name them")
        return DEFAULT_CLASSES[k]

    # -- requests ------------------------------------------------------------------
    @property
    def face_size(self) -> int:
        return self.input.size

    def _check_faces(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[..., None]
        if faces.ndim != 4 or faces.shape[1:3] != (self.face_size, self.face_size):
            raise ValueError(f"faces must be [N, {self.face_size}, {self.face_size}, C]; got {faces.shape}")
        if self.input.channels and faces.shape[3] != self.input.channels:
            raise ValueError(f"the model takes {self.input.channels}-channel faces; got {faces.shape[3]}")
        return as_uint8_faces(faces)

    def _request(self, faces: np.ndarray, signature: str) -> predict_pb2.PredictRequest:
        request = predict_pb2.PredictRequest()
        self._spec(request, signature)
        request.inputs[self.input.name].CopyFrom(_encode(faces))
        return request

    def predict(self, faces: np.ndarray) -> Prediction:
        """Classifies any number of faces (``[N, S, S, C]`` uint8), ``max_batch`` per call."""
        faces = self._check_faces(faces)
        if len(faces) == 0:
            return Prediction(np.zeros((0, len(self.classes)), np.float32), np.zeros(0, int), self.classes)
        chunks = [self._call(self._stub.Predict, self._request(faces[i:i + self.max_batch], self.signature))
                  for i in range(0, len(faces), self.max_batch)]
        probabilities = np.concatenate([_decode(c.outputs["probabilities"]) for c in chunks])
        return Prediction(probabilities, probabilities.argmax(1), self.classes)

    def predict_async(self, faces: np.ndarray) -> Future:
        """Starts classifying ``faces`` and returns a Future of the :class:`Prediction`.

        Several can be in flight at once; each retries like :meth:`predict`.
        """
        future: Future = Future()
        faces = self._check_faces(faces)
        parts = [faces[i:i + self.max_batch] for i in range(0, len(faces), self.max_batch)]
        results: list = [None] * len(parts)
        pending = [len(parts)]
        if not parts:
            future.set_result(self.predict(faces))
            return future

        def launch(index: int, attempt: int) -> None:
            call = self._stub.Predict.future(self._request(parts[index], self.signature), timeout=self.timeout)
            call.add_done_callback(lambda c: done(index, attempt, c))

        def retry_or_fail(index: int, attempt: int, err: grpc.RpcError) -> None:
            if future.done():
                return
            if self._worth_retrying(err.code()):
                launch(index, attempt + 1)
            else:
                future.set_exception(self._translate(err))

        def done(index: int, attempt: int, call) -> None:
            if future.done():
                return
            err = call.exception()
            if err is not None:
                if attempt < self.retries and (err.code() in RETRYABLE or err.code() == grpc.StatusCode.NOT_FOUND):
                    # Decided on a timer thread: the model-status RPC must not block gRPC's callback thread.
                    threading.Timer(min(self.backoff * 2 ** attempt, 5.0), retry_or_fail, (index, attempt, err)).start()
                    return
                future.set_exception(self._translate(err))
                return
            results[index] = _decode(call.result().outputs["probabilities"])
            pending[0] -= 1
            if pending[0] == 0:
                probabilities = np.concatenate(results)
                future.set_result(Prediction(probabilities, probabilities.argmax(1), self.classes))

        for i in range(len(parts)):
            launch(i, 0)
        return future

    def explanation_signature(self, method: str) -> str:
        """The served signature of explanation ``method``; one clear error for a method that is not served, or
        a server whose export lacks it."""
        from fer_keras.explain.methods import SERVED_METHODS, cam_method

        entry = cam_method(method)
        if entry.served is None:
            raise ValueError(f"{method} is not served; served methods: {', '.join(SERVED_METHODS)}")
        if entry.signature not in self.signatures:
            raise SignatureMismatch(f"{self._describe()} has no {entry.signature!r} signature (exported by an older "
                                    "version of fer_keras.export?); explain locally with a .keras model")
        return entry.signature

    def explain(self, faces: np.ndarray, method: str = "gradcam") -> tuple[Prediction, np.ndarray]:
        """Probabilities and heatmaps ([N, h, w] in [0, 1]) of a served explanation method
        (``fer_keras.explain.methods.SERVED_METHODS``: gradcam, gradcam++, layercam, saliency),
        from the signature the export names for it."""
        signature = self.explanation_signature(method)
        faces = self._check_faces(faces)
        probs, maps = [], []
        for i in range(0, max(len(faces), 1), self.max_batch):
            if len(faces) == 0:
                break
            out = self._call(self._stub.Predict, self._request(faces[i:i + self.max_batch], signature)).outputs
            probs.append(_decode(out["probabilities"]))
            maps.append(_decode(out["heatmap"]))
        if not probs:
            return self.predict(faces), np.zeros((0, 1, 1), np.float32)
        probabilities = np.concatenate(probs)
        return Prediction(probabilities, probabilities.argmax(1), self.classes), np.concatenate(maps)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "EmotionClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tls_credentials(ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None):
    """gRPC TLS credentials from PEM files (``None`` for the system roots)."""
    read = lambda p: open(p, "rb").read() if p else None  # noqa: E731
    return grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))


__all__ = ["EmotionClient", "Prediction", "ClientError", "ServerUnavailable", "ModelNotFound", "SignatureMismatch",
           "tls_credentials"]
