"""Hostile requests to the local server: each is refused with TF Serving's status code and a message that
names what was wrong, before anything large is allocated, and the server's memory stays bounded."""

import threading

import grpc
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving.config import single_model_config
from serving.local.registry import ServingError
from serving.local.server import LocalServer, MemoryBudget
from tests.serving.conftest import faces

pytestmark = pytest.mark.reliability
# Growth of the process's peak resident memory a hostile request may cause (the model itself runs
# in chunks of 64 faces, about 3 MB each for the full GiMeFive, less for the tiny one here).
MEMORY_BOUND_MB = 400


def peak_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # Linux: VmHWM starts again from the current size
        fh.write("5")


def request_with(proto) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "gimefive"
    request.inputs["face"].CopyFrom(proto)
    return request


def declared(dims, dtype=types_pb2.DT_UINT8, int_val=(), content=b""):
    proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]))
    proto.int_val.extend(int_val)
    if content:
        proto.tensor_content = content
    return proto


def call(predict, request):
    try:
        predict.Predict(request, timeout=60)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("proto,code,message", [
    # 40 bytes declaring 268 MB: refused on the declared size, nothing allocated.
    (declared([1, 64, 64, 65536], int_val=[7]), grpc.StatusCode.RESOURCE_EXHAUSTED, "per request"),
    (declared([-1, 64, 64, 3], int_val=[7]), grpc.StatusCode.INVALID_ARGUMENT, "negative dimension"),
    (declared([1025, 64, 64, 3], int_val=[7]), grpc.StatusCode.INVALID_ARGUMENT, "exceeds this server's limit of 1024"),
    (declared([2, 64, 64, 3], int_val=[7]), grpc.StatusCode.INVALID_ARGUMENT, "holds 24576 values but 1 were sent"),
    (declared([2, 64, 64, 3], content=bytes(100)), grpc.StatusCode.INVALID_ARGUMENT, "holds 24576 bytes but 100"),
    (declared([2, 64, 32, 3], int_val=[7] * 12288), grpc.StatusCode.INVALID_ARGUMENT, "expected shape"),
])
def test_hostile_shapes_are_refused_before_allocation(hostile_server, proto, code, message):
    predict = hostile_server
    reset_peak()
    before = peak_mb()
    got, details = call(predict, request_with(proto))
    assert got == code and message in details, (got, details)
    assert peak_mb() - before < 50  # nothing the size of the declared tensor was allocated
    assert call(predict, request_with(tf.make_tensor_proto(faces(2))))[0] == grpc.StatusCode.OK


def test_a_wrong_channel_count_names_the_cause(hostile_server):
    got, details = call(hostile_server, request_with(tf.make_tensor_proto(faces(2, channels=7))))
    assert got == grpc.StatusCode.INVALID_ARGUMENT
    assert "Graph execution error" not in details and details.strip()


def test_a_large_allowed_request_runs_in_bounded_memory(hostile_server):
    reset_peak()
    before = peak_mb()
    assert call(hostile_server, request_with(tf.make_tensor_proto(faces(1024))))[0] == grpc.StatusCode.OK
    assert peak_mb() - before < MEMORY_BOUND_MB


def test_requests_beyond_the_inflight_budget_get_resource_exhausted(exported):
    config = single_model_config("gimefive", str(exported / "gimefive"))
    with LocalServer(config, port=0, poll_seconds=0, max_inflight_bytes=100_000) as srv:
        assert srv.registry.wait_until_available("gimefive", 60)
        channel = grpc.insecure_channel(srv.address)
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        small = request_with(tf.make_tensor_proto(faces(2)))      # 2 x 12 KB, counted twice: fits
        large = request_with(tf.make_tensor_proto(faces(8)))      # 8 x 12 KB x 2 = 196 KB: never fits
        assert call(predict, small)[0] == grpc.StatusCode.OK
        got, details = call(predict, large)
        assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "--max_inflight_bytes" in details
        assert call(predict, small)[0] == grpc.StatusCode.OK
        channel.close()


def test_the_budget_waits_for_room_then_refuses():
    budget = MemoryBudget(100, wait_seconds=0.2)
    budget.acquire(80)
    with pytest.raises(ServingError, match="retry later"):
        budget.acquire(30)  # no room within 0.2 s
    threading.Timer(0.05, budget.release, args=(80,)).start()
    budget.acquire(30)  # room made while it waited
    assert budget.used == 30


@pytest.fixture
def hostile_server(exported):
    config = single_model_config("gimefive", str(exported / "gimefive"))
    srv = LocalServer(config, port=0, poll_seconds=0, max_batch=1024).start()
    assert srv.registry.wait_until_available("gimefive", 60)
    channel = grpc.insecure_channel(srv.address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)])
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()
    srv.stop(grace=0.5)


def test_with_server_side_batching_a_large_request_also_runs_in_chunks(exported):
    from serving.local.batching import Batcher, BatchingOptions

    calls = []

    def signature(face):
        calls.append(int(face.shape[0]))
        return {"probabilities": tf.zeros([face.shape[0], 6])}

    batcher = Batcher(signature, BatchingOptions(max_batch_size=64))
    out = batcher({"face": faces(200)})
    assert out["probabilities"].shape == (200, 6) and calls == [64, 64, 64, 8]
