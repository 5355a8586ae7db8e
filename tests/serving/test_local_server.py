"""The local server against TF Serving's behaviour: round trips, metadata, status, errors, hot versions."""

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from fer_keras.data.taxonomy import SIX
from fer_keras.exporting import export_saved_model
from serving.config import single_model_config
from serving.local.server import LocalServer
from tests.serving.conftest import faces

REPO = Path(__file__).resolve().parents[2]


def predict_request(x, name="gimefive", signature="", version=None, label=None, alias="face", output_filter=()):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(x))
    request.output_filter.extend(output_filter)
    return request


def test_predict_round_trip_equals_the_model(shared_stubs, tiny_model):
    predict, _ = shared_stubs
    x = faces(5)
    response = predict.Predict(predict_request(x), timeout=30)
    assert response.model_spec.name == "gimefive" and response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "serving_default"
    expected = np.asarray(tiny_model(x.astype(np.float32))["probabilities"])
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, atol=1e-5)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["class_id"]), expected.argmax(1))
    assert response.outputs["probabilities"].float_val  # typed fields, as TF Serving's AsProtoField
    filtered = predict.Predict(predict_request(x, output_filter=["class_id"]), timeout=30)
    assert set(filtered.outputs) == {"class_id"}


def test_gradcam_and_labels_signatures(shared_stubs):
    predict, _ = shared_stubs
    response = predict.Predict(predict_request(faces(2), signature="gradcam"), timeout=30)
    heatmap = tf.make_ndarray(response.outputs["heatmap"])
    assert heatmap.shape == (2, 4, 4) and heatmap.min() >= 0 and heatmap.max() <= 1
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "gimefive"
    request.model_spec.signature_name = "labels"
    names = tf.make_ndarray(predict.Predict(request, timeout=30).outputs["class_names"])
    assert [n.decode() for n in names] == list(SIX.classes)


def test_metadata_lists_the_signatures(shared_stubs):
    predict, _ = shared_stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "gimefive"
    response = predict.GetModelMetadata(request, timeout=30)
    assert response.model_spec.version.value == 1
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    sigs = signature_map.signature_def
    assert {"serving_default", "gradcam", "labels"} <= set(sigs)
    face = sigs["serving_default"].inputs["face"]
    assert face.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in face.tensor_shape.dim] == [-1, 64, 64, -1]
    assert set(sigs["serving_default"].outputs) == {"probabilities", "class_id", "logits"}


def test_model_status(shared_stubs):
    _, model_service = shared_stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "gimefive"
    status = model_service.GetModelStatus(request, timeout=30).model_version_status
    assert [(s.version, s.state) for s in status] == [(1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
    assert status[0].status.error_code == 0


def _code(call, request):
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def test_error_codes(shared_stubs):
    predict, model_service = shared_stubs
    x = faces(2)
    cases = [
        (predict_request(x, name="nope"), grpc.StatusCode.NOT_FOUND, "Servable not found"),
        (predict_request(x, version=7), grpc.StatusCode.NOT_FOUND, "Specific(gimefive, 7)"),
        (predict_request(x, label="canary"), grpc.StatusCode.INVALID_ARGUMENT, "version label"),
        (predict_request(x, signature="nope"), grpc.StatusCode.FAILED_PRECONDITION, 'signature key "nope"'),
        (predict_request(x, alias="image"), grpc.StatusCode.INVALID_ARGUMENT, "alias not found"),
        (predict_request(x.astype(np.float32)), grpc.StatusCode.INVALID_ARGUMENT, "to be uint8 but float"),
        (predict_request(faces(2)[:, :32]), grpc.StatusCode.INVALID_ARGUMENT, "expected shape"),
        (predict_request(x[0]), grpc.StatusCode.INVALID_ARGUMENT, "expected shape"),
        (predict_request(x[:0]), grpc.StatusCode.INVALID_ARGUMENT, "batch is empty"),
        (predict_request(x, output_filter=["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias"),
    ]
    for request, code, message in cases:
        got, details = _code(predict.Predict, request)
        assert got == code and message in details, (got, details)
    extra = predict_request(x)
    extra.inputs["other"].CopyFrom(tf.make_tensor_proto(x))
    got, details = _code(predict.Predict, extra)
    assert got == grpc.StatusCode.INVALID_ARGUMENT and "input size does not match" in details
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    assert _code(model_service.GetModelStatus, status)[0] == grpc.StatusCode.NOT_FOUND
    # The server keeps serving after every error.
    assert predict.Predict(predict_request(x), timeout=30).outputs["class_id"]


def test_nothing_loaded_answers_as_tf_serving(tmp_path):
    with LocalServer(single_model_config("gimefive", str(tmp_path / "empty")), port=0, poll_seconds=0) as srv:
        from tensorflow_serving.apis import (
            model_service_pb2_grpc,
            prediction_service_pb2_grpc,
        )

        channel = grpc.insecure_channel(srv.address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        assert _code(stub.Predict, predict_request(faces(1))) == (
            grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(gimefive)")
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "gimefive"
        assert _code(model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus, status) == (
            grpc.StatusCode.NOT_FOUND, "Could not find any versions of model gimefive")


def test_a_large_batch_fits(shared_stubs):
    predict, _ = shared_stubs
    big = faces(400, channels=3)  # 4.9 MB: over gRPC's default 4 MiB limit
    response = predict.Predict(predict_request(big, output_filter=["class_id"]), timeout=60)
    assert tf.make_ndarray(response.outputs["class_id"]).shape == (400,)


def test_version_labels_and_specific_versions(exported, tiny_model):
    from serving.config import read_model_server_config

    export_saved_model(tiny_model, exported, "gimefive", SIX.classes)  # version 2
    config = read_model_server_config(REPO / "serving" / "models.config")
    config.model_config_list.config[0].base_path = str(exported / "gimefive")
    with LocalServer(config, port=0, poll_seconds=0) as srv:
        assert srv.registry.wait_until_available("gimefive")
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.address))
        assert stub.Predict(predict_request(faces(1), label="stable")).model_spec.version.value == 1
        assert stub.Predict(predict_request(faces(1), label="canary")).model_spec.version.value == 2
        assert stub.Predict(predict_request(faces(1), version=1)).model_spec.version.value == 1
        assert stub.Predict(predict_request(faces(1))).model_spec.version.value == 2


def test_new_version_is_picked_up_with_no_failed_request(server, stubs, exported):
    predict, _ = stubs
    seen, failures = [], []
    stop = threading.Event()

    def client():
        while not stop.is_set():
            try:
                seen.append(predict.Predict(predict_request(faces(2)), timeout=30).model_spec.version.value)
            except grpc.RpcError as err:
                failures.append(err)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    # Version 2 appears while requests flow, as an export puts it: written aside, then renamed into place.
    staging = exported / "gimefive" / ".tmp-2"
    shutil.copytree(exported / "gimefive" / "1", staging)
    os.rename(staging, exported / "gimefive" / "2")
    deadline = time.time() + 60
    while time.time() < deadline and 2 not in seen[-5:]:
        time.sleep(0.1)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert not failures
    assert 1 in seen and seen[-1] == 2
    first_two = seen.index(2)
    assert all(v == 2 for v in seen[first_two + 3 * 3:])  # after the switch, only the new version answers


def test_a_broken_version_does_not_stop_serving(server, stubs, exported):
    predict, model_service = stubs
    broken = exported / "gimefive" / "5"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a saved model")
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "gimefive"
    # The broken version is retried at every poll (a half-copied version may be complete by the next), so
    # read its status until it is END; every read on the way pairs a state with its own error.
    deadline, reads = time.time() + 30, []
    while time.time() < deadline:
        status = {s.version: s for s in model_service.GetModelStatus(request, timeout=30).model_version_status}
        if 5 in status:
            reads.append((status[5].state, status[5].status.error_code, status[5].status.error_message))
            if status[5].state == get_model_status_pb2.ModelVersionStatus.END:
                break
        time.sleep(0.05)
    assert predict.Predict(predict_request(faces(1)), timeout=30).model_spec.version.value == 1
    end = get_model_status_pb2.ModelVersionStatus.END
    assert reads and reads[-1][0] == end and reads[-1][1] == 13 and reads[-1][2]  # INTERNAL, with the load error
    assert all(code == 0 and not message for state, code, message in reads if state != end)


def test_a_version_being_loaded_again_reports_no_error_from_its_last_attempt(tmp_path):
    """State and error change together: while a version that failed is loaded again, its status is
    LOADING with no error, never LOADING with the last attempt's INTERNAL."""
    from serving.local.registry import State

    broken = tmp_path / "gimefive" / "5"
    broken.mkdir(parents=True)
    (broken / "saved_model.pb").write_bytes(b"not a saved model")
    server = LocalServer(single_model_config("gimefive", str(tmp_path / "gimefive")), port=0, poll_seconds=0)
    registry = server.registry
    registry.poll_once()
    ((version, state, error),) = registry.version_states("gimefive")
    assert (version, state) == (5, State.END) and error
    seen_while_loading = []
    real_load = tf.saved_model.load

    def watching_load(path, *args, **kwargs):
        seen_while_loading.append(registry.version_states("gimefive"))
        return real_load(path, *args, **kwargs)

    tf.saved_model.load, restore = watching_load, tf.saved_model.load
    try:
        registry.poll_once()
    finally:
        tf.saved_model.load = restore
    assert seen_while_loading == [[(5, State.LOADING, "")]]
    assert registry.version_states("gimefive")[0][1] == State.END


def test_binds_to_loopback_by_default(shared_server):
    assert shared_server.host == "127.0.0.1"


def test_command_serves_and_stops_cleanly_on_sigterm(exported):
    proc = subprocess.Popen([sys.executable, "-m", "serving.local", "--port", "0", "--model_name", "gimefive",
                             "--model_base_path", str(exported / "gimefive"), "--rest_api_port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = None
    deadline = time.time() + 120
    lines = []
    while time.time() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        match = re.search(r"listening on (\S+)", line)
        if match:
            address = match.group(1)
            break
    assert address and address.startswith("127.0.0.1:"), "".join(lines)
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(address))
    for _ in range(100):
        try:
            stub.Predict(predict_request(faces(1)), timeout=10)
            break
        except grpc.RpcError:
            time.sleep(0.2)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert "shutting down" in proc.stdout.read()


def test_server_side_batching_joins_concurrent_requests(exported, tiny_model):
    from concurrent.futures import ThreadPoolExecutor

    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from serving.local.batching import BatchingOptions

    options = BatchingOptions(max_batch_size=16, batch_timeout_micros=50_000, num_batch_threads=1)
    with LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0,
                     batching=options) as srv:
        assert srv.registry.wait_until_available("gimefive")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.address))
        inputs = [faces(2, seed=i) for i in range(6)]
        with ThreadPoolExecutor(6) as pool:
            responses = list(pool.map(lambda x: stub.Predict(predict_request(x), timeout=30), inputs))
        for x, response in zip(inputs, responses):
            expected = np.asarray(tiny_model(x.astype(np.float32))["probabilities"])
            np.testing.assert_allclose(tf.make_ndarray(response.outputs["probabilities"]), expected, atol=1e-5)
        gray = stub.Predict(predict_request(faces(1, channels=1)), timeout=30)  # other shapes batch apart
        assert tf.make_ndarray(gray.outputs["class_id"]).shape == (1,)


def test_an_unloaded_version_lets_go_of_its_batchers(exported, tiny_model):
    """With batching on, each served signature's batcher holds its version's model: a swap must drop
    them, or every swap keeps a whole model (about 195 MB for the shipped one; benchmarks.version_swaps)."""
    from serving.local.batching import BatchingOptions

    options = BatchingOptions(max_batch_size=16, batch_timeout_micros=1000, num_batch_threads=1)
    with LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0.2,
                     batching=options) as srv:
        assert srv.registry.wait_until_available("gimefive")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.address))
        assert stub.Predict(predict_request(faces(2)), timeout=30).model_spec.version.value == 1
        (old,) = [b for _, b in srv.servicer._batchers.values() if b is not None]
        export_saved_model(tiny_model, exported, "gimefive", SIX.classes)  # version 2
        deadline = time.time() + 60
        while time.time() < deadline and stub.Predict(predict_request(faces(2)),
                                                      timeout=30).model_spec.version.value != 2:
            time.sleep(0.1)
        deadline = time.time() + 30
        while time.time() < deadline and any(owner.version == 1 for owner, _ in srv.servicer._batchers.values()):
            time.sleep(0.1)
        assert {owner.version for owner, _ in srv.servicer._batchers.values()} == {2}
        for thread in old._threads:
            thread.join(5)
        assert not any(thread.is_alive() for thread in old._threads)


def test_versions_found_on_disk_report_start_before_the_port_opens(exported, monkeypatch):
    """TF Serving reports a version it has found but not loaded as START; the local server marks them
    before it opens its port, so a client never sees 'no versions' for a model that is on its way."""
    from serving.local.registry import ServingError, State

    server = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0)
    registry = server.registry
    with pytest.raises(ServingError):
        registry.version_states("gimefive")  # nothing scanned yet
    opened = []
    monkeypatch.setattr(server._server, "start", lambda: opened.append(registry.version_states("gimefive")))
    monkeypatch.setattr(registry, "start", lambda: None)  # no load: the state the port opens with
    server.start()
    assert opened == [[(1, State.START, "")]]
    spec = model_pb2.ModelSpec(name="gimefive")
    with pytest.raises(ServingError, match="Servable not found"):
        registry.resolve(spec)
    registry.poll_once()
    assert registry.version_states("gimefive") == [(1, State.AVAILABLE, "")]
