"""A LiteRT file in the place of the model server: the video client and the analysis service answer as the
served model does, within the file's quantisation error, on a machine with no model server."""

import json

import httpx
import numpy as np
import pytest
import skimage.data

from clients.client import EmotionClient, SignatureMismatch
from clients.edge import LiteRTClient
from clients.video import main as video_main
from fer_keras.data.taxonomy import SIX
from fer_keras.exporting import export_litert
from tests.clients.test_video import write_video
from tests.service.conftest import encode, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def edge_file(tmp_path_factory, tiny_model):
    return export_litert(tiny_model, tmp_path_factory.mktemp("edge") / "tiny.tflite", SIX.classes)


def test_the_file_answers_as_the_served_model(shared_server, edge_file):
    faces = np.random.default_rng(1).integers(0, 256, (9, 64, 64, 1)).astype(np.uint8)
    served = EmotionClient(shared_server.address, "gimefive").predict(faces)
    with LiteRTClient(edge_file, max_batch=4) as lite:
        local = lite.predict(faces)
        assert lite.classes == tuple(SIX.classes) and lite.face_size == 64
        assert np.abs(local.probabilities - served.probabilities).max() < 1e-5
        assert (local.class_ids == served.class_ids).all()
        assert np.array_equal(lite.predict_async(faces).result().probabilities, local.probabilities)
        with pytest.raises(ValueError, match="scaled to"):
            lite.predict(faces.astype(np.float32) / 255)
        with pytest.raises(SignatureMismatch, match="carries no explanation"):
            lite.explain(faces, "gradact-fused")


def test_the_video_client_runs_on_the_file_as_on_the_server(shared_server, edge_file, tmp_path):
    video = write_video(tmp_path / "clip.mp4", frames=12)
    common = [str(video), "--no-video", "--explain", "none", "--detect-every", "3"]
    assert video_main(common + ["--server", shared_server.address, "--out-dir", str(tmp_path / "served")]) == 0
    assert video_main(common + ["--backend", "litert", "--model-file", str(edge_file),
                                "--out-dir", str(tmp_path / "edge")]) == 0
    read = lambda d: [json.loads(line) for line in (tmp_path / d / "frames.jsonl").read_text().splitlines()]  # noqa: E731
    served, edge = read("served"), read("edge")
    assert len(served) == len(edge) == 12
    for a, b in zip(served, edge):
        assert [f["box"] for f in a["faces"]] == [f["box"] for f in b["faces"]]
        for fa, fb in zip(a["faces"], b["faces"]):
            assert max(abs(fa["probabilities"][c] - fb["probabilities"][c]) for c in SIX.classes) < 1e-4
    # asking a file for explanations: one clear error, before any frame
    assert video_main([str(video), "--no-video", "--backend", "litert", "--model-file", str(edge_file),
                       "--out-dir", str(tmp_path / "x")]) == 2


def test_the_service_answers_from_the_file_as_from_the_server(shared_server, edge_file):
    from clients.service.analyst import Analyst
    from clients.service.app import create_app
    from clients.settings import AnalyzerConfig

    photo = encode(skimage.data.astronaut(), quality=90)
    config = AnalyzerConfig(detect_every=2)
    served = Analyst({"gimefive": EmotionClient(shared_server.address, "gimefive")}, config)
    with LiteRTClient(edge_file) as lite, running(create_app(served)) as a, \
            running(create_app(Analyst({"tiny": lite}, config))) as b:
        post = lambda url, **params: httpx.post(f"{url}/v1/analyze", params=params, timeout=60,  # noqa: E731
                                                files={"image": ("p.jpg", photo, "image/jpeg")})
        one, other = post(a).json()["faces"], post(b).json()["faces"]
        assert [f["box"] for f in one] == [f["box"] for f in other] and len(one) == 1
        assert max(abs(one[0]["probabilities"][c] - other[0]["probabilities"][c]) for c in SIX.classes) < 1e-4
        model = httpx.get(f"{b}/v1/models").json()["models"][0]
        assert model["name"] == "tiny" and model["explanations"] == [] and model["default_explanation"] is None
        refused = post(b, explain="gradcam")
        assert refused.status_code == 400 and "no gradcam" in refused.json()["error"]["message"]
