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


@pytest.fixture
def stubs(server):
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024),
                                                               ("grpc.max_receive_message_length", 64 * 1024 * 1024)])
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel), model_service_pb2_grpc.ModelServiceStub(channel)
    channel.close()


def faces(n=4, seed=0, channels=3):
    return np.random.default_rng(seed).integers(0, 256, (n, 64, 64, channels)).astype(np.uint8)
