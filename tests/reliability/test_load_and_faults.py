"""Load, faults and hostile requests against the local server; the analyzer surviving a server restart."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from benchmarks.load import run_load
from tests.clients.test_video import write_video

pytestmark = pytest.mark.reliability
REPO = Path(__file__).resolve().parents[2]


def test_concurrent_clients_get_no_failed_request(server):
    result = run_load(server.address, clients=16, seconds=4, max_requests=400, batch=4)
    print(f"load: {result.line()}")
    assert result.failures == 0 and result.requests > 0
    assert len(result.latencies_ms) == result.requests


def _request(array):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "gimefive"
    request.inputs["face"].CopyFrom(tf.make_tensor_proto(array))
    return request


def test_hostile_requests_are_refused_and_the_server_keeps_serving(server):
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 512 * 1024 * 1024)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    good = np.zeros((1, 64, 64, 3), np.uint8)
    hostile = [
        (good.astype(np.float64), grpc.StatusCode.INVALID_ARGUMENT),            # dtype
        (np.zeros((64, 64, 3), np.uint8), grpc.StatusCode.INVALID_ARGUMENT),   # rank
        (np.zeros((1, 65, 64, 3), np.uint8), grpc.StatusCode.INVALID_ARGUMENT),  # size
        (np.zeros((0, 64, 64, 3), np.uint8), grpc.StatusCode.INVALID_ARGUMENT),  # empty batch
        (np.zeros((5000, 64, 64, 1), np.uint8), grpc.StatusCode.INVALID_ARGUMENT),  # over the batch limit
        (np.zeros((1, 64, 64, 7), np.uint8), grpc.StatusCode.INVALID_ARGUMENT),  # channels the model refuses
    ]
    for array, code in hostile:
        with pytest.raises(grpc.RpcError) as info:
            stub.Predict(_request(array), timeout=60)
        assert info.value.code() == code, (array.shape, array.dtype, info.value.details())
        assert info.value.details()
    # Over the 256 MiB message limit: refused by gRPC itself.
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_request(np.zeros((4300, 256, 256, 1), np.uint8)), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert stub.Predict(_request(good), timeout=30).outputs["class_id"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(base: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "serving.local", "--port", str(port), "--model_name", "gimefive",
                             "--model_base_path", str(base)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if re.search(r"listening on", line):
            return proc
    raise AssertionError("the server did not start")


def test_video_run_survives_a_server_kill_and_restart(exported, tmp_path):
    from clients.analyzer import AnalyzerConfig, VideoAnalyzer
    from clients.client import EmotionClient
    from clients.sources import open_source

    port = _free_port()
    server = _start_server(exported / "gimefive", port)
    video = write_video(tmp_path / "clip.mp4", frames=120)
    jsonl = tmp_path / "frames.jsonl"
    client = EmotionClient(f"127.0.0.1:{port}", retries=12, backoff=0.2, timeout=10, connect_timeout=60)
    analyzer = VideoAnalyzer(client, AnalyzerConfig(detector="haar", detect_every=3, batch_frames=4, max_in_flight=2,
                                                    explain_every=8))
    outcome = {}

    def run():
        try:
            outcome["summary"] = analyzer.run(open_source(str(video)), jsonl=jsonl, progress=False)
        except Exception as err:  # reported by the assertion below
            outcome["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 120
    while time.time() < deadline and (not jsonl.exists() or len(jsonl.read_text().splitlines()) < 20):
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)  # mid-run, no goodbye
    server.wait()
    time.sleep(1.0)
    restarted = _start_server(exported / "gimefive", port)
    try:
        thread.join(240)
        assert "error" not in outcome, outcome.get("error")
        frames = [json.loads(line)["frame"] for line in jsonl.read_text().splitlines()]
        assert frames == list(range(120))  # every frame exactly once
        assert outcome["summary"]["frames"] == 120
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(30)
