"""The shipped GiMeFive on real FER2013 test faces: its accuracy is what its card says."""

import pytest

from fer_keras import pretrained
from tests.conftest import FER2013, requires_fer2013

pytestmark = [pytest.mark.realdata, requires_fer2013]


def test_shipped_weights_score_their_published_figures_on_a_fixed_fer2013_sample():
    meta = pretrained.info()
    measured = pretrained.sample_accuracy(pretrained.load(), FER2013, meta["classes"], meta["architecture"]["image_size"],
                                          flip_tta=meta.get("flip_tta", False))
    published = meta["fer2013_sample"]
    assert measured["n"] == published["n"] == 595
    # The same faces through the same weights: equal up to a few float round-offs across CPUs.
    assert measured["accuracy"] == pytest.approx(published["accuracy"], abs=0.01)
    # And the sample agrees with the whole-test figure on the card (595 faces: one standard error is ~2 points).
    assert measured["accuracy"] == pytest.approx(meta["test"]["accuracy"], abs=0.05)
