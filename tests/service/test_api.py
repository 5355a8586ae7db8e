"""``POST /v1/analyze`` and the service's other doors, over real HTTP (uvicorn on a free port)."""

from __future__ import annotations

import base64
import io
import json
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import skimage.data
from PIL import Image

from clients.service.analyst import Analyst
from clients.service.app import Limits, create_app
from clients.settings import AnalyzerConfig
from fer_keras.detection import Face, classified_region
from tests.service.conftest import encode, running

pytestmark = pytest.mark.reliability


def post(url, data: bytes, params=None, **kwargs):
    return httpx.post(f"{url}/v1/analyze", params=params, files={"image": ("photo.jpg", data, "image/jpeg")},
                      timeout=60, **kwargs)


def error_of(reply, status: int) -> str:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"} and body["error"]["status"] == status and body["error"]["message"]
    return body["error"]["code"]


def test_a_photo_in_three_body_forms_gives_one_answer(service, astronaut_jpeg):
    multipart = post(service, astronaut_jpeg, {"explain": "gradcam"})
    as_json = httpx.post(f"{service}/v1/analyze", json={"image": base64.b64encode(astronaut_jpeg).decode(),
                                                         "explain": "gradcam"}, timeout=60)
    raw = httpx.post(f"{service}/v1/analyze?explain=gradcam", content=astronaut_jpeg,
                     headers={"Content-Type": "image/jpeg"}, timeout=60)
    answers = [r.json() for r in (multipart, as_json, raw)]
    assert all(r.status_code == 200 for r in (multipart, as_json, raw))
    assert answers[0]["faces"] == answers[1]["faces"] == answers[2]["faces"]
    result = answers[0]
    assert result["model"] == "tiny-a" and result["stream"] is None and result["frame"] is None
    assert result["image"] == {"width": 512, "height": 512} and len(result["faces"]) == 1
    face = result["faces"][0]
    x, y, w, h = face["box"]
    assert 140 < x + w / 2 < 290 and 30 < y + h / 2 < 190  # the astronaut's face
    assert set(face["landmarks"]) >= {"left_eye", "right_eye", "mouth"}
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-3
    assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)
    assert "track" not in face and "smoothed" not in face
    # the crop is the square that was classified: framed from the keypoints, not the box's square
    detected = Face(tuple(face["box"]), face["score"], {k: tuple(v) for k, v in face["landmarks"].items()})
    assert face["crop"] == list(classified_region(detected, align=True))
    explanation = face["explanation"]
    assert explanation["method"] == "gradcam" and explanation["class"] == face["emotion"]
    assert abs(sum(explanation["regions"].values()) - 1) < 1e-3 and explanation["regions_from"] == "keypoints"
    heatmap = Image.open(io.BytesIO(base64.b64decode(explanation["heatmap_png"])))
    assert heatmap.format == "PNG" and heatmap.mode == "RGBA" and heatmap.size == (64, 64)
    without = post(service, astronaut_jpeg, {"explain": "gradcam", "heatmaps": "false"}).json()["faces"][0]
    assert "heatmap_png" not in without["explanation"] and without["explanation"]["regions"] == explanation["regions"]
    assert "explanation" not in post(service, astronaut_jpeg).json()["faces"][0]


def test_a_stream_keeps_its_tracks_smoothing_and_explanations(service, astronaut_jpeg):
    frames = [post(service, astronaut_jpeg, {"stream": "cam-1", "explain": "gradcam"}).json() for _ in range(4)]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3] and all(f["stream"] == "cam-1" for f in frames)
    faces = [f["faces"][0] for f in frames]
    assert {face["track"] for face in faces} == {1}
    assert all(abs(sum(face["smoothed"].values()) - 1) < 1e-3 for face in faces)
    # refreshed every 3 frames (explain_every), the latest map returned between refreshes with its age
    assert [face["explanation"]["frames_old"] for face in faces] == [0, 1, 2, 0]
    # another stream starts its own tracks; a stream stays with its model
    assert post(service, astronaut_jpeg, {"stream": "cam-2"}).json()["faces"][0]["track"] == 1
    assert error_of(post(service, astronaut_jpeg, {"stream": "cam-1", "model": "tiny-b"}), 409) == "stream_conflict"
    assert httpx.delete(f"{service}/v1/streams/cam-1").status_code == 204
    assert error_of(httpx.delete(f"{service}/v1/streams/cam-1"), 404) == "no_stream"
    again = post(service, astronaut_jpeg, {"stream": "cam-1", "model": "tiny-b"}).json()
    assert again["frame"] == 0 and again["model"] == "tiny-b"


def test_photos_are_turned_by_their_exif_orientation(service):
    upright = skimage.data.astronaut()
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[274] = 6  # "rotate 90 clockwise to show"
    turned = post(service, encode(stored, quality=90, exif=exif.tobytes())).json()
    plain = post(service, encode(upright, quality=90)).json()
    assert turned["image"] == {"width": 512, "height": 512} and len(turned["faces"]) == 1
    assert np.abs(np.subtract(turned["faces"][0]["box"], plain["faces"][0]["box"])).max() <= 4


def test_the_models_and_the_openapi_description(service):
    models = httpx.get(f"{service}/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["tiny-a", "tiny-b"] and models[0]["default"]
    assert models[0]["default_explanation"] == "gradact-fused" and "gradcam" in models[0]["explanations"]
    spec = httpx.get(f"{service}/openapi.json").json()
    analyze = spec["paths"]["/v1/analyze"]["post"]
    assert set(analyze["requestBody"]["content"]) >= {"multipart/form-data", "application/json"}
    assert {"200", "400", "413", "415", "422", "503"} <= set(analyze["responses"])
    page = httpx.get(f"{service}/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert httpx.get(f"{service}/healthz").json()["status"] == "ok"


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG signature and header declaring ``width`` x ``height``, then a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_bad_input_gets_one_clear_error_each(service, astronaut_jpeg):
    assert error_of(post(service, b"this is not an image"), 415) == "not_an_image"
    assert error_of(post(service, astronaut_jpeg[: len(astronaut_jpeg) // 2]), 422) == "undecodable_image"
    assert error_of(post(service, _png_header(20_000, 20_000)), 413) == "image_too_large"
    assert error_of(post(service, b""), 400) == "empty_image"
    assert error_of(post(service, astronaut_jpeg, {"stream": "no spaces please"}), 400) == "bad_request"
    assert error_of(post(service, astronaut_jpeg, {"stream": "x" * 65}), 400) == "bad_request"
    assert error_of(post(service, astronaut_jpeg, {"model": "nope"}), 404) == "unknown_model"
    assert error_of(post(service, astronaut_jpeg, {"explain": "tea-leaves"}), 400) == "bad_request"
    assert error_of(post(service, astronaut_jpeg, {"heatmaps": "maybe"}), 422) == "invalid_parameter"
    json_post = lambda body: httpx.post(f"{service}/v1/analyze", content=body,  # noqa: E731
                                        headers={"Content-Type": "application/json"}, timeout=60)
    assert error_of(json_post(b"{not json"), 400) == "bad_json"
    assert error_of(json_post(b'{"picture": "abc"}'), 400) == "no_image"
    assert error_of(json_post(b'{"image": "@@@"}'), 400) == "bad_base64"
    assert error_of(httpx.post(f"{service}/v1/analyze", files={"other": ("a.jpg", b"x")}, timeout=60),
                    400) == "no_image"
    assert error_of(httpx.post(f"{service}/v1/analyze", data={"image": "x"}, timeout=60), 415) == "unsupported_body"
    assert error_of(httpx.post(f"{service}/v1/analyze", content=b"x", headers={"Content-Type": "text/plain"}),
                    415) == "unsupported_body"
    big = b"\xff\xd8" + bytes(5 * 2**20)
    assert error_of(post(service, big), 413) == "body_too_large"  # declared by its length
    chunks = iter([bytes(2**20)] * 5)  # no length declared: counted as it arrives
    assert error_of(httpx.post(f"{service}/v1/analyze", content=chunks, headers={"Content-Type": "image/jpeg"},
                               timeout=60), 413) == "body_too_large"
    # none of it changed what the service answers
    assert post(service, astronaut_jpeg).status_code == 200


def test_a_client_that_stops_sending_its_body_is_timed_out(service):
    host, port = urlsplit(service).hostname, urlsplit(service).port
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n\r\n"
                     + b"\xff\xd8" * 10)
        reply = b""
        while b"\r\n\r\n" not in reply:
            part = sock.recv(4096)
            if not part:
                break
            reply += part
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


class _SlowDetector:
    """BlazeFace stand-in that takes its time, counting the analyses in progress at once."""

    confirm_score = 0.0

    def __init__(self, seconds: float):
        self.seconds, self.now, self.most = seconds, 0, 0
        self.lock = threading.Lock()

    def detect(self, image):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return [Face((0, 0, image.shape[1], image.shape[0]), 1.0)]


def test_a_burst_of_64_clients_gets_answers_or_503_with_retry_after(clients):
    detector = _SlowDetector(0.2)
    analyst = Analyst(clients, AnalyzerConfig(), detector=detector)
    limits = Limits(workers=2, queue=6)
    photo = encode(np.full((64, 64, 3), 128, np.uint8), "PNG")
    with running(create_app(analyst, limits)) as url:
        first = post(url, photo).json()
        with ThreadPoolExecutor(64) as pool:
            replies = list(pool.map(lambda _: post(url, photo), range(64)))
        answered = [r for r in replies if r.status_code == 200]
        refused = [r for r in replies if r.status_code == 503]
        assert len(answered) + len(refused) == 64 and answered and refused
        assert all(error_of(r, 503) == "saturated" and r.headers["Retry-After"] == "1" for r in refused)
        assert all(r.json()["faces"] == first["faces"] for r in answered)  # nothing answered changed
        assert detector.most <= limits.workers  # never more analyses at once than workers
        assert post(url, photo).json()["faces"] == first["faces"]  # and the service goes on as before


def test_a_model_server_that_is_down_gives_503(exported_template, astronaut_jpeg):
    from clients.client import EmotionClient
    from serving.local.embedded import start_embedded_server

    srv = start_embedded_server("tiny", str(exported_template / "gimefive"))
    client = EmotionClient(srv.address, "tiny", timeout=2, retries=1)
    with running(create_app(Analyst({"tiny": client}))) as url:
        assert post(url, astronaut_jpeg).status_code == 200
        srv.stop(grace=0)
        reply = post(url, astronaut_jpeg)
        assert error_of(reply, 503) == "model_server_unavailable" and int(reply.headers["Retry-After"]) >= 1
    client.close()


def test_json_errors_for_every_path(service):
    assert error_of(httpx.get(f"{service}/no/such/page"), 404) == "http"
    assert error_of(httpx.get(f"{service}/v1/analyze"), 405) == "http"
    assert json.loads(httpx.get(f"{service}/v1/models").text)["models"]
