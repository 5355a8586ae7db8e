"""The cluster manifests (cluster/): parsed, their names and ports consistent, and the commands their
pods run (shell included) give each pod its place in the cluster or tuner id it needs and flags the commands take."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"


def _docs(name: str) -> dict:
    docs = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict) -> dict:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _run_pod(container: dict, tmp_path: Path, index: int) -> dict:
    """Runs the pod's command with a stand-in ``python`` that reports its arguments and environment."""
    stub = tmp_path / "bin" / "python"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text('#!/bin/sh\nexec "$REAL_PYTHON" -c \'import json, os, sys; '
                    'print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ)}))\' "$@"\n')
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{stub.parent}:{os.environ['PATH']}", "REAL_PYTHON": sys.executable,
           "JOB_COMPLETION_INDEX": str(index), **_env(container)}
    out = subprocess.run(container["command"], env=env, capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def test_the_image_holds_every_package():
    text = (CLUSTER / "Dockerfile").read_text()
    for package in ("fer_keras", "tuning", "serving", "clients"):
        assert f"COPY {package} {package}" in text
    assert "FROM python:3.11" in text and "pip install" in text


def test_multi_worker_training_job_gives_each_pod_its_place_in_the_cluster(tmp_path):
    from fer_keras.multiworker import cluster_from_env
    from fer_keras.train import build_parser, config_from_args

    docs = _docs("training-multiworker.yaml")
    service, job = docs["Service", "fer-train"], docs["Job", "fer-train"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = _container(job)
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["selector"] == {"job-name": "fer-train"}
    assert pod["subdomain"] == "fer-train" and spec["completionMode"] == "Indexed"
    workers = spec["completions"]
    assert spec["parallelism"] == workers == int(_env(container)["WORKERS"])
    port = int(_env(container)["PORT"])
    # JAX's coordinator on PORT, the run's watch on the port after it: both open on the pod and named.
    assert sorted(p["port"] for p in service["spec"]["ports"]) == [port, port + 1]
    assert sorted(p["containerPort"] for p in container["ports"]) == [port, port + 1]
    assert _env(container)["KERAS_BACKEND"] == "jax"
    for index in range(workers):
        ran = _run_pod(container, tmp_path, index)
        cluster = cluster_from_env(ran["env"], check_ports=False)
        assert (cluster.process_id, cluster.num_processes) == (index, workers)
        assert cluster.coordinator == f"fer-train-0.fer-train:{port}"
        assert cluster.watch_address == ("fer-train-0.fer-train", port + 1)
        assert ran["argv"][:2] == ["-m", "fer_keras.train"]
        config = config_from_args(build_parser().parse_args(ran["argv"][2:]))
        assert config.strategy == "multi-worker" and config.run_dir.startswith("/runs/")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]}
    assert set(mounts) == set(claims) and mounts["runs"] == "/runs" and claims["runs"] == "fer-runs"


def test_tuning_search_chief_service_and_workers_agree(tmp_path):
    from tuning.search import build_parser

    docs = _docs("tuning-search.yaml")
    service = docs["Service", "fer-tuning-chief"]
    chief_job, workers_job = docs["Job", "fer-tuning-chief"], docs["Job", "fer-tuning-workers"]
    chief = _container(chief_job)
    assert service["spec"]["selector"] == chief_job["spec"]["template"]["metadata"]["labels"]
    (port,) = service["spec"]["ports"]
    chief_env = _env(chief)
    assert chief_env["KERASTUNER_TUNER_ID"] == "chief"
    assert port["port"] == port["targetPort"] == int(chief_env["KERASTUNER_ORACLE_PORT"])
    assert [p["containerPort"] for p in chief["ports"]] == [port["targetPort"]]
    chief_args = build_parser().parse_args(chief["command"][3:])
    assert chief["command"][:3] == ["python", "-m", "tuning.search"]

    workers = workers_job["spec"]["completions"]
    assert workers_job["spec"]["completionMode"] == "Indexed" and workers_job["spec"]["parallelism"] == workers
    ids = set()
    for index in range(workers):
        ran = _run_pod(_container(workers_job), tmp_path, index)
        env = ran["env"]
        assert env["KERASTUNER_ORACLE_IP"] == service["metadata"]["name"]
        assert int(env["KERASTUNER_ORACLE_PORT"]) == port["port"]
        ids.add(env["KERASTUNER_TUNER_ID"])
        assert ran["argv"][:2] == ["-m", "tuning.search"]
        # every worker runs the chief's search: same flags, same shared --out-dir
        assert vars(build_parser().parse_args(ran["argv"][2:])) == vars(chief_args)
    assert ids == {f"tuner{i}" for i in range(workers)}
    for job in (chief_job, workers_job):
        claims = {v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"]}
        assert claims == {"fer-data", "fer-runs"}


@pytest.mark.parametrize("name", ["training-multiworker.yaml", "tuning-search.yaml"])
def test_readme_names_the_manifest(name):
    assert f"cluster/{name}" in (REPO / "README.md").read_text()
