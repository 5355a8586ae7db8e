import shutil
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from fer_keras.data.taxonomy import SIX
from fer_keras.exporting import export_saved_model
from fer_keras.models import build_model
from serving.config import single_model_config
from serving.local.server import LocalServer


@pytest.fixture(scope="session")
def tiny_model():
    return build_model("gimefive", width=1 / 16)


@pytest.fixture(scope="session")
def exported_template(tmp_path_factory, tiny_model):
    """Version 1 of a tiny GiMeFive, exported once per session (an export takes seconds)."""
    base = tmp_path_factory.mktemp("exported") / "models"
    export_saved_model(tiny_model, base, "gimefive", SIX.classes)
    return base


@pytest.fixture
def exported(tmp_path, exported_template):
    """A serving base path with version 1 of a tiny GiMeFive: a test's own copy, free to change."""
    return Path(shutil.copytree(exported_template, tmp_path / "models"))


@pytest.fixture
def server(exported):
    srv = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0.2).start()
    assert srv.registry.wait_until_available("gimefive", 60)
    yield srv
    srv.stop(grace=0.5)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory, exported_template):
    """One local server for the tests of a module that only ask it questions: starting one and loading the
    model takes 3-5 s under the suite's load. A test that stops, restarts or changes its server (new
    versions, broken ones) takes ``server``, its own."""
    base = Path(shutil.copytree(exported_template, tmp_path_factory.mktemp("shared") / "models"))
    srv = LocalServer(single_model_config("gimefive", str(base / "gimefive")), port=0, poll_seconds=0.2).start()
    assert srv.registry.wait_until_available("gimefive", 60)
    yield srv
    srv.stop(grace=0.5)


def _stubs(address):
    channel = grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024),
                                                      ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    return channel, (prediction_service_pb2_grpc.PredictionServiceStub(channel),
                     model_service_pb2_grpc.ModelServiceStub(channel))


@pytest.fixture
def stubs(server):
    channel, stubs = _stubs(server.address)
    yield stubs
    channel.close()


@pytest.fixture
def shared_stubs(shared_server):
    channel, stubs = _stubs(shared_server.address)
    yield stubs
    channel.close()


def faces(n=4, seed=0, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, channels)).astype(np.uint8)
