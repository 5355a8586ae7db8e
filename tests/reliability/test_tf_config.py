"""Bad TF_CONFIG for --strategy multi-worker (the JAX cluster can be derived from it): one clear error
each, before any cluster starts, and nothing written (no run folder)."""

import json
import socket

import pytest

from fer_keras.multiworker import ClusterError, check_tf_config

pytestmark = pytest.mark.reliability


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(index=0, workers=None) -> str:
    workers = workers or [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


@pytest.mark.parametrize("text, message", [
    (None, "needs the cluster: the KERAS_DISTRIBUTION_.* or the TF_CONFIG environment variable"),
    ("{not json", "TF_CONFIG is not JSON"),
    ('["worker"]', "cluster must map task types to lists of host:port"),
    ('{"cluster": {"worker": "127.0.0.1:2222"}, "task": {"type": "worker", "index": 0}}', "lists of host:port"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', "lists of host:port"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "chief", "index": 0}}', "must name a type"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}}', "must name a type"),
])
def test_malformed_tf_config_is_named(text, message):
    with pytest.raises(ClusterError, match=message):
        check_tf_config(text)


def test_an_index_outside_the_cluster_is_named():
    with pytest.raises(ClusterError, match="task index 2 is outside its 2 worker addresses"):
        check_tf_config(_config(index=2))
    assert check_tf_config(_config(index=1))["task"]["index"] == 1


def test_a_port_in_use_is_named():
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ClusterError, match=f"port {port} cannot be listened on.*another run"):
            check_tf_config(_config(workers=[f"127.0.0.1:{port}", f"127.0.0.1:{_free_port()}"]))
