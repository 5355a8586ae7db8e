"""The analysis service's fixtures: a tiny model served under two names, the service running on a free port."""

from __future__ import annotations

import io
import socket
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import skimage.data
import uvicorn
from PIL import Image

from clients.client import EmotionClient
from clients.service.analyst import Analyst
from clients.service.app import Limits, create_app
from clients.settings import AnalyzerConfig
from serving.config import models_config
from serving.local.server import LocalServer
from tests.serving.conftest import exported_template, tiny_model  # noqa: F401

# The tests' model server may answer a little late under a loaded CI machine; nothing here times a request.
TIMEOUT = 60.0


@contextmanager
def running(app):
    """Serves an ASGI app with uvicorn on a free loopback port, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_keep_alive=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def model_server(exported_template):  # noqa: F811 (the fixture imported above)
    """The tiny GiMeFive served twice, as "tiny-a" and "tiny-b" (two models for the service to choose)."""
    base = str(exported_template / "gimefive")
    srv = LocalServer(models_config({"tiny-a": base, "tiny-b": base}), port=0, poll_seconds=0).start()
    assert srv.registry.wait_until_available("tiny-a", 60) and srv.registry.wait_until_available("tiny-b", 60)
    yield srv
    srv.stop(grace=0.5)


@pytest.fixture(scope="module")
def clients(model_server):
    made = {name: EmotionClient(model_server.address, name, timeout=TIMEOUT) for name in ("tiny-a", "tiny-b")}
    yield made
    for client in made.values():
        client.close()


@pytest.fixture(scope="module")
def analyst(clients):
    return Analyst(clients, AnalyzerConfig(explain_every=3, detect_every=2))


@pytest.fixture(scope="module")
def service(analyst):
    with running(create_app(analyst, Limits(max_bytes=4 * 2**20, max_pixels=5_000_000, body_timeout=1.0))) as url:
        yield url


def encode(rgb: np.ndarray, fmt: str = "JPEG", **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, fmt, **options)
    return out.getvalue()


@pytest.fixture(scope="session")
def astronaut_jpeg() -> bytes:
    return encode(skimage.data.astronaut(), quality=90)  # one face around x 160..270, y 40..170
