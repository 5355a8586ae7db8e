"""The analysis service on a LiteRT file, with no model server: the same answers as the served model."""

import httpx
import pytest

from clients.edge import LiteRTClient
from clients.service.analyst import Analyst
from clients.service.app import create_app
from clients.settings import AnalyzerConfig
from fer_keras.data.taxonomy import SIX
from fer_keras.exporting import export_litert
from tests.service.conftest import running

pytestmark = pytest.mark.slow


def test_the_service_answers_from_a_litert_file_as_from_the_server(tmp_path, tiny_model, clients, astronaut_jpeg):
    edge = LiteRTClient(export_litert(tiny_model, tmp_path / "tiny.tflite", SIX.classes))
    config = AnalyzerConfig(detect_every=2)
    served, local = Analyst({"tiny-a": clients["tiny-a"]}, config), Analyst({"tiny": edge}, config)
    with running(create_app(served)) as a, running(create_app(local)) as b:
        post = lambda url, **params: httpx.post(f"{url}/v1/analyze", params=params, timeout=60,  # noqa: E731
                                                files={"image": ("p.jpg", astronaut_jpeg, "image/jpeg")})
        one, other = post(a).json()["faces"], post(b).json()["faces"]
        assert [f["box"] for f in one] == [f["box"] for f in other] and len(one) == 1
        assert max(abs(one[0]["probabilities"][c] - other[0]["probabilities"][c]) for c in SIX.classes) < 1e-4
        model = httpx.get(f"{b}/v1/models").json()["models"][0]
        assert model["name"] == "tiny" and model["explanations"] == [] and model["default_explanation"] is None
        refused = post(b, explain="gradcam")
        assert refused.status_code == 400 and "no gradcam" in refused.json()["error"]["message"]
    edge.close()
