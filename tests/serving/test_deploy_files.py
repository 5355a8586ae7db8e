"""The TF Serving deployment files parse with TF Serving's protos and point where export writes."""

from pathlib import Path

import grpc
import pytest
import yaml
from tensorflow_serving.apis import prediction_service_pb2_grpc

from fer_keras.data.taxonomy import SIX
from fer_keras.exporting import export_saved_model
from serving.config import (
    read_batching_parameters,
    read_model_server_config,
    read_monitoring_config,
)
from serving.local.__main__ import build_parser, load_config
from serving.local.server import LocalServer
from tests.serving.conftest import faces
from tests.serving.test_local_server import predict_request

SERVING = Path(__file__).resolve().parents[2] / "serving"


def test_models_config_parses_and_labels_name_served_versions():
    config = read_model_server_config(SERVING / "models.config")
    (model,) = config.model_config_list.config
    assert model.name == "gimefive" and model.model_platform == "tensorflow"
    assert model.base_path == "/models/gimefive"
    served = set(model.model_version_policy.specific.versions)
    assert set(model.version_labels) == {"stable", "canary"} and set(model.version_labels.values()) <= served


def test_batching_follows_tf_servings_guidance():
    params = read_batching_parameters(SERVING / "batching.config")
    assert params.num_batch_threads.value == 2                   # one per core of the target machine
    assert 0 < params.batch_timeout_micros.value <= 10_000       # a few milliseconds
    assert list(params.allowed_batch_sizes)[-1] == params.max_batch_size.value


def test_bad_batching_file_is_rejected(tmp_path):
    bad = tmp_path / "b.config"
    bad.write_text("max_batch_size { value: 32 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 16\n")
    with pytest.raises(ValueError, match="end at max_batch_size"):
        read_batching_parameters(bad)
    bad.write_text("max_batch_sise { value: 32 }\n")
    with pytest.raises(ValueError, match="not a valid BatchingParameters"):
        read_batching_parameters(bad)


def test_monitoring_exposes_prometheus():
    monitoring = read_monitoring_config(SERVING / "monitoring.config")
    assert monitoring.prometheus_config.enable and monitoring.prometheus_config.path.startswith("/monitoring/")


def _flags(args):
    return dict(a.lstrip("-").split("=", 1) for a in args)


def test_compose_file_mounts_the_export_base_and_the_config_files():
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text())
    service = compose["services"]["tfserving"]
    assert service["image"].startswith("tensorflow/serving:")
    assert {"127.0.0.1:8500:8500", "127.0.0.1:8501:8501"} == set(service["ports"])  # loopback unless told otherwise
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    assert mounts["../models"] == "/models" and mounts["./"] == "/config"
    flags = _flags(service["command"])
    for key in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        assert flags[key].startswith("/config/") and (SERVING / Path(flags[key]).name).is_file()
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    check = service["healthcheck"]
    assert "/v1/models/gimefive/metadata" in check["test"][1] and check["start_period"] == "300s"


def test_kubernetes_manifest():
    docs = list(yaml.safe_load_all((SERVING / "k8s" / "fer-serving.yaml").read_text()))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"PersistentVolumeClaim", "Deployment", "Service", "HorizontalPodAutoscaler"}
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # Ready (and started) only once a version is AVAILABLE: the metadata path, not the status path.
    assert container["readinessProbe"]["httpGet"]["path"] == "/v1/models/gimefive/metadata"
    assert container["startupProbe"]["httpGet"]["path"] == "/v1/models/gimefive/metadata"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    claim = next(v for v in pod["volumes"] if v["name"] == "models")["persistentVolumeClaim"]["claimName"]
    assert claim == kinds["PersistentVolumeClaim"]["metadata"]["name"]
    assert kinds["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert _flags(container["args"])["model_config_file"] == "/config/models.config"
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == kinds["Deployment"]["metadata"]["name"]


def test_the_shipped_config_serves_what_export_writes(tmp_path, tiny_model):
    """models.config's /models/gimefive is where `fer_keras.export --base models --name gimefive` writes."""
    import shutil

    first = export_saved_model(tiny_model, tmp_path / "models", "gimefive", SIX.classes)
    shutil.copytree(first, first.parent / "2")  # a second version for the config's canary label
    args = build_parser().parse_args(["--model_config_file", str(SERVING / "models.config"),
                                      "--models_root", str(tmp_path / "models")])
    config = load_config(args)
    with LocalServer(config, port=0, poll_seconds=0) as srv:
        assert srv.registry.wait_until_available("gimefive")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(srv.address))
        assert stub.Predict(predict_request(faces(1), label="canary"), timeout=30).model_spec.version.value == 2


def test_the_compose_healthcheck_passes_only_once_a_version_serves(tmp_path, tiny_model):
    import shutil
    import subprocess

    from serving.config import single_model_config

    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    command = yaml.safe_load((SERVING / "docker-compose.yml").read_text())["services"]["tfserving"]["healthcheck"][
        "test"
    ][1]
    base = tmp_path / "models" / "gimefive"
    with LocalServer(single_model_config("gimefive", str(base)), port=0, poll_seconds=0.1, rest_port=0) as srv:
        check = command.replace("8501", str(srv.rest.port))
        assert subprocess.run(["sh", "-c", check], timeout=30).returncode != 0  # nothing served yet
        export_saved_model(tiny_model, tmp_path / "models", "gimefive", SIX.classes)
        assert srv.registry.wait_until_available("gimefive", 60)
        assert subprocess.run(["sh", "-c", check], timeout=30).returncode == 0
