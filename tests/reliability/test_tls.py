"""TLS on the local server (TF Serving's --ssl_config_file), with a self-signed certificate made here."""

import json
import shutil
import subprocess

import pytest

from clients.client import EmotionClient, ServerUnavailable, tls_credentials
from serving.config import read_ssl_config, single_model_config
from serving.local.server import LocalServer
from tests.serving.conftest import faces

pytestmark = [pytest.mark.reliability,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")]


def make_cert(folder, name):
    key, cert = folder / f"{name}.key", folder / f"{name}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, cert


def ssl_config_file(path, key, cert, ca=None, verify=False):
    lines = [f"server_key: {json.dumps(key.read_text())}", f"server_cert: {json.dumps(cert.read_text())}"]
    if ca:
        lines.append(f"custom_ca: {json.dumps(ca.read_text())}")
    lines.append(f"client_verify: {'true' if verify else 'false'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def serve(exported, ssl_file):
    srv = LocalServer(single_model_config("gimefive", str(exported / "gimefive")), host="localhost", port=0,
                      poll_seconds=0, ssl_config=read_ssl_config(ssl_file)).start()
    assert srv.registry.wait_until_available("gimefive", 60)
    return srv


def test_tls_with_a_self_signed_certificate(exported, tmp_path):
    key, cert = make_cert(tmp_path, "server")
    srv = serve(exported, ssl_config_file(tmp_path / "ssl.config", key, cert))
    try:
        with EmotionClient(srv.address, credentials=tls_credentials(str(cert)), timeout=30) as client:
            assert client.predict(faces(2)).probabilities.shape == (2, 6)
        with pytest.raises(ServerUnavailable):  # plaintext gets nowhere
            EmotionClient(srv.address, retries=0, connect_timeout=1, timeout=5)
    finally:
        srv.stop(grace=0.5)


def test_mutual_tls_needs_the_client_certificate(exported, tmp_path):
    key, cert = make_cert(tmp_path, "server")
    client_key, client_cert = make_cert(tmp_path, "client")
    srv = serve(exported, ssl_config_file(tmp_path / "ssl.config", key, cert, ca=client_cert, verify=True))
    try:
        creds = tls_credentials(str(cert), str(client_cert), str(client_key))
        with EmotionClient(srv.address, credentials=creds, timeout=30) as client:
            assert client.predict(faces(1)).probabilities.shape == (1, 6)
        with pytest.raises(ServerUnavailable):
            EmotionClient(srv.address, credentials=tls_credentials(str(cert)), retries=0, connect_timeout=1, timeout=5)
    finally:
        srv.stop(grace=0.5)


def test_bad_ssl_configs_are_clear_errors(tmp_path):
    (tmp_path / "a.config").write_text('server_cert: "x"\n')
    with pytest.raises(ValueError, match="needs server_key and server_cert"):
        read_ssl_config(tmp_path / "a.config")
    (tmp_path / "b.config").write_text('server_key: "k"\nserver_cert: "c"\nclient_verify: true\n')
    with pytest.raises(ValueError, match="client_verify needs custom_ca"):
        read_ssl_config(tmp_path / "b.config")
    (tmp_path / "c.config").write_text("server_key: 3 3\n")
    with pytest.raises(ValueError, match="not a valid SSLConfig"):
        read_ssl_config(tmp_path / "c.config")
