"""The shipped models give the predictions they gave when this file was written.

``shipped_predictions.json`` holds the probabilities of every shipped model on
fourteen fixed synthetic faces, plain and with flip test-time averaging,
recorded before the package was restructured (issue 18); a model's entry is
recorded again only when its weights are deliberately replaced (gimefive-fer2013:
issue 25, the robust default). Any change to the weights format, the
architecture builder, the preprocessing inside the model or the flip averaging
that moves a prediction shows up here.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from fer_keras import pretrained
from fer_keras.data.synthetic import draw_face
from fer_keras.evaluation import predict_probabilities

pytestmark = pytest.mark.slow
REFERENCE = json.loads((Path(__file__).parent / "shipped_predictions.json").read_text())


def _faces() -> np.ndarray:
    rng = np.random.default_rng(REFERENCE["seed"])
    return np.stack([draw_face(e, rng, 64) for e in REFERENCE["emotions"] for _ in range(2)])[..., None]


def test_every_shipped_model_is_in_the_reference():
    assert sorted(REFERENCE["models"]) == pretrained.available()


@pytest.mark.parametrize("name", sorted(REFERENCE["models"]))
def test_shipped_model_predictions_are_unchanged(name):
    model = pretrained.load(name)
    faces = _faces()
    expected = REFERENCE["models"][name]
    np.testing.assert_allclose(predict_probabilities(model, faces), expected["probabilities"], atol=2e-5)
    np.testing.assert_allclose(predict_probabilities(model, faces, flip_tta=True), expected["flip_tta"], atol=2e-5)
