"""TF Serving's REST API on the local server, spoken in plain HTTP."""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from serving.config import single_model_config
from serving.local.server import LocalServer
from tests.serving.conftest import faces


@pytest.fixture
def rest_server(exported):
    srv = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), port=0, poll_seconds=0.2,
                      rest_port=0).start()
    assert srv.registry.wait_until_available("gimefive", 60)
    yield srv
    srv.stop(grace=0.5)


@pytest.fixture
def rest(rest_server):
    return f"http://127.0.0.1:{rest_server.rest.port}"


def http(url, body=None, method=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_row_and_columnar_predict_equal_the_model(rest, tiny_model):
    x = faces(3)
    expected = np.asarray(tiny_model(x.astype(np.float32))["probabilities"])
    status, body = http(f"{rest}/v1/models/gimefive:predict", {"instances": x.tolist()})
    assert status == 200 and len(body["predictions"]) == 3
    np.testing.assert_allclose([p["probabilities"] for p in body["predictions"]], expected, atol=1e-5)
    assert [p["class_id"] for p in body["predictions"]] == expected.argmax(1).tolist()
    status, body = http(f"{rest}/v1/models/gimefive/versions/1:predict", {"inputs": x.tolist()})
    assert status == 200
    np.testing.assert_allclose(body["outputs"]["probabilities"], expected, atol=1e-5)


def test_status_and_metadata(rest):
    status, body = http(f"{rest}/v1/models/gimefive")
    assert status == 200
    assert body["model_version_status"] == [{"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]
    status, body = http(f"{rest}/v1/models/gimefive/metadata")
    assert status == 200 and body["model_spec"] == {"name": "gimefive", "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signatureDef"]
    assert {"serving_default", "labels", "gradcam"} <= set(signatures)
    assert signatures["serving_default"]["inputs"]["face"]["dtype"] == "DT_UINT8"


@pytest.mark.parametrize(
    "path,body,code,message",
    [
        ("/v1/models/nope:predict", {"instances": [[0]]}, 404, "Servable not found"),
        ("/v1/models/gimefive/versions/9:predict", {"instances": faces(1).tolist()}, 404, "Specific(gimefive, 9)"),
        ("/v1/models/gimefive:predict", {"instances": faces(1).tolist(), "inputs": []}, 400, "exactly one of"),
        ("/v1/models/gimefive:predict", {"instances": faces(1)[:, :32].tolist()}, 400, "expected shape"),
        (
            "/v1/models/gimefive:predict",
            {"instances": (faces(1).astype(int) + 300).tolist()},
            400,
            "whole numbers from 0 to 255",
        ),
        ("/v1/models/gimefive:predict", {"signature_name": "nope", "instances": [[0]]}, 400, 'signature key "nope"'),
        ("/v1/models/gimefive:predict", b"{not json", 400, "JSON Parse error"),
        ("/v1/models/gimefive:classify", {"instances": [[0]]}, 404, "Malformed request"),
    ],
)
def test_errors_have_tf_servings_shape_and_status(rest, path, body, code, message):
    status, payload = http(f"{rest}{path}", body)
    assert status == code and set(payload) == {"error"} and message in payload["error"], (status, payload)


def test_a_served_label_resolves(exported, tiny_model):
    config = single_model_config("gimefive", str(exported / "gimefive"))
    config.model_config_list.config[0].version_labels["stable"] = 1
    with LocalServer(config, port=0, poll_seconds=0, rest_port=0) as srv:
        assert srv.registry.wait_until_available("gimefive", 60)
        status, body = http(f"http://127.0.0.1:{srv.rest.port}/v1/models/gimefive/labels/stable:predict",
                            {"instances": faces(1).tolist()})
        assert status == 200 and len(body["predictions"]) == 1
        status, body = http(f"http://127.0.0.1:{srv.rest.port}/v1/models/gimefive/labels/stable")
        assert status == 200 and body["model_version_status"][0]["version"] == "1"


def test_the_rest_client_gives_what_the_grpc_client_gives(rest, rest_server):
    from clients.client import EmotionClient, ModelNotFound
    from clients.rest import RestEmotionClient

    client = RestEmotionClient(rest, "gimefive", max_batch=2)
    assert client.classes == ("happiness", "surprise", "sadness", "anger", "disgust", "fear")
    x = faces(5)
    via_rest = client.predict(x)
    with pytest.raises(ValueError, match="scaled to"):
        client.predict(np.full((1, 64, 64, 3), 0.5))
    with pytest.raises(ModelNotFound):
        RestEmotionClient(rest, "nope")
    with EmotionClient(rest_server.address, "gimefive") as grpc_client:
        np.testing.assert_allclose(via_rest.probabilities, grpc_client.predict(x).probabilities, atol=1e-6)
    assert via_rest.labels == [client.classes[i] for i in via_rest.class_ids]
