"""EmotionClient against the local server started in the test."""

import socket
import threading
import time

import numpy as np
import pytest

from clients.client import (
    EmotionClient,
    ModelNotFound,
    ServerUnavailable,
    SignatureMismatch,
)
from fer_keras.data.taxonomy import SIX
from serving.config import single_model_config
from serving.local.server import LocalServer
from tests.serving.conftest import faces


@pytest.fixture
def client(shared_server):
    with EmotionClient(shared_server.address, "gimefive", max_batch=3, timeout=30) as c:
        yield c


def test_metadata_gives_the_input_and_the_classes(client):
    assert client.input.name == "face" and client.face_size == 64 and client.input.channels is None
    assert client.classes == SIX.classes and client.has_gradcam


def test_predict_splits_into_batches_and_matches_the_model(client, shared_server, tiny_model, monkeypatch):
    calls = []
    original = client._stub.Predict

    class Counting:
        def __call__(self, request, timeout=None):
            calls.append(request)
            return original(request, timeout=timeout)

        future = original.future

    monkeypatch.setattr(client._stub, "Predict", Counting())
    x = faces(7)
    prediction = client.predict(x)
    assert len(calls) == 3  # 3 + 3 + 1 faces
    expected = np.asarray(tiny_model(x.astype(np.float32))["probabilities"])
    np.testing.assert_allclose(prediction.probabilities, expected, atol=1e-5)
    assert prediction.labels == [SIX.classes[i] for i in expected.argmax(1)]
    assert client.predict(faces(0)).probabilities.shape == (0, 6)


def test_async_predictions_keep_several_calls_in_flight(client):
    futures = [client.predict_async(faces(5, seed=i)) for i in range(4)]
    results = [f.result(timeout=60) for f in futures]
    for i, r in enumerate(results):
        np.testing.assert_allclose(r.probabilities, client.predict(faces(5, seed=i)).probabilities, atol=1e-6)


def test_explain_uses_the_gradcam_signature(client):
    prediction, maps = client.explain(faces(4))
    assert maps.shape == (4, 4, 4) and maps.min() >= 0 and maps.max() <= 1
    assert prediction.probabilities.shape == (4, 6)


def test_gray_and_wrong_shapes(client):
    assert client.predict(faces(2, channels=1)).probabilities.shape == (2, 6)
    assert client.predict(faces(2, channels=1)[..., 0]).probabilities.shape == (2, 6)
    with pytest.raises(ValueError, match=r"faces must be \[N, 64, 64, C\]"):
        client.predict(np.zeros((2, 48, 48, 1), np.uint8))


def test_clear_errors(shared_server):
    start = time.monotonic()
    with pytest.raises(ModelNotFound, match="'nope'.*Could not find any versions of model nope"):
        EmotionClient(shared_server.address, "nope", connect_timeout=30)
    assert time.monotonic() - start < 10  # an unknown model is not waited for
    with pytest.raises(ModelNotFound, match="version 9"):
        EmotionClient(shared_server.address, "gimefive", version=9, connect_timeout=1)
    with pytest.raises(SignatureMismatch, match="no signature 'nope'"):
        EmotionClient(shared_server.address, "gimefive", signature="nope")
    with pytest.raises(SignatureMismatch, match="one face batch input"):
        EmotionClient(shared_server.address, "gimefive", signature="labels")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_names_the_address():
    port = _free_port()
    start = time.monotonic()
    with pytest.raises(ServerUnavailable, match=f"127.0.0.1:{port}.*unreachable"):
        EmotionClient(f"127.0.0.1:{port}", retries=1, backoff=0.05, timeout=1, connect_timeout=1)
    assert time.monotonic() - start < 15


def test_client_waits_while_the_model_is_loading(exported, monkeypatch):
    import tensorflow as tf

    real_load = tf.saved_model.load

    def slow_load(*args, **kwargs):  # a big model: several seconds between "port open" and "model available"
        time.sleep(3)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(tf.saved_model, "load", slow_load)
    server = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0)
    loader = threading.Thread(target=server.start)  # opens the port, then loads
    loader.start()
    try:
        time.sleep(0.5)
        assert server.registry.version_states("gimefive")[0][1] == 20  # LOADING: TF Serving answers NOT_FOUND now
        client = EmotionClient(server.address, "gimefive", backoff=0.1, timeout=5, connect_timeout=60)
        assert client.predict(faces(1)).probabilities.shape == (1, 6)
    finally:
        loader.join(60)
        server.stop(grace=0.5)


def test_predict_waits_for_a_restarted_server_still_loading_its_model(exported, monkeypatch):
    import tensorflow as tf

    first = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0).start()
    port = first.port
    client = EmotionClient(first.address, "gimefive", retries=12, backoff=0.1, timeout=5, connect_timeout=30)
    assert client.predict(faces(2)).probabilities.shape == (2, 6)
    first.stop(grace=0.1)

    real_load = tf.saved_model.load
    monkeypatch.setattr(tf.saved_model, "load", lambda *a, **k: (time.sleep(2), real_load(*a, **k))[1])
    second = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=port, poll_seconds=0)
    loader = threading.Thread(target=second.start)  # the port opens at once, the model loads for 2 s
    loader.start()
    try:
        deadline = time.monotonic() + 10
        while not second.registry._models["gimefive"].states and time.monotonic() < deadline:
            time.sleep(0.01)
        states = second.registry.version_states("gimefive")
        assert states[0][1] in (10, 20), states  # START, then LOADING (marked before the port opens)
        # Requests reach the new server before the model is there (NOT_FOUND): retried, not fatal.
        pending = client.predict_async(faces(4))
        assert client.predict(faces(3)).probabilities.shape == (3, 6)
        assert pending.result(timeout=60).probabilities.shape == (4, 6)
    finally:
        loader.join(60)
        client.close()
        second.stop(grace=0.5)


def test_not_found_from_a_server_that_is_gone_again_is_worth_repeating(exported):
    import grpc

    server = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0).start()
    client = EmotionClient(server.address, "gimefive", timeout=2)
    assert not client._worth_retrying(grpc.StatusCode.INVALID_ARGUMENT)
    server.stop(grace=0)  # killed while it was loading: the look at the model's status is UNAVAILABLE
    assert client._worth_retrying(grpc.StatusCode.NOT_FOUND)
    client.close()


def test_client_waits_for_a_server_that_starts_late(exported):
    port = _free_port()
    result = {}

    def connect():
        try:
            result["client"] = EmotionClient(f"127.0.0.1:{port}", backoff=0.1, timeout=5, connect_timeout=60)
        except Exception as err:  # reported below
            result["error"] = err

    thread = threading.Thread(target=connect)
    thread.start()
    time.sleep(1.5)
    server = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=port, poll_seconds=0).start()
    try:
        thread.join(90)
        assert "error" not in result, result.get("error")
        assert result["client"].predict(faces(2)).probabilities.shape == (2, 6)
    finally:
        server.stop(grace=0.5)


@pytest.mark.parametrize("faces,message", [
    (np.full((2, 64, 64, 3), 0.5, np.float32), "scaled to [0, 1]"),
    (np.full((2, 64, 64, 3), np.nan, np.float32), "NaN or infinite"),
    (np.full((2, 64, 64, 3), 300, np.int64), "from 300 to 300"),
    (np.full((2, 64, 64, 3), -5, np.int64), "from -5 to -5"),
    (np.full((2, 64, 64, 3), True), "must be numbers"),
])
def test_faces_that_a_cast_would_corrupt_are_refused(client, faces, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        client.predict(faces)
    with pytest.raises(ValueError):
        client.predict_async(faces)


def test_whole_grey_levels_in_other_dtypes_are_accepted(client):
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3))
    reference = client.predict(x.astype(np.uint8)).probabilities
    np.testing.assert_allclose(client.predict(x.astype(np.int64)).probabilities, reference, atol=1e-6)
    np.testing.assert_allclose(client.predict(x.astype(np.float32)).probabilities, reference, atol=1e-6)


def test_default_retries_outlast_a_server_restart(server, monkeypatch):
    import grpc

    import clients.client as client_module

    slept = []
    with EmotionClient(server.address, "gimefive") as c:
        class Unavailable(grpc.RpcError):
            def code(self):
                return grpc.StatusCode.UNAVAILABLE

            def details(self):
                return "restarting"

        def always_down(request, timeout=None):
            raise Unavailable()

        monkeypatch.setattr(client_module.time, "sleep", slept.append)
        with pytest.raises(ServerUnavailable):
            c._call(always_down, None)
    assert sum(slept) >= 8.0  # a restart of the local server takes 4-5 s
