"""Every shipped model on real test faces: its accuracy on a fixed sample is what its card says."""

import pytest

from fer_keras import pretrained
from fer_keras.evaluation import sample_accuracy
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.realdata

# Where each sample source lives under ../shared/data, and the file that shows it is there.
SOURCES = {"fer2013": ("fer2013", "train"), "ferplus": ("ferplus", "FER2013Test")}


@pytest.mark.parametrize("name", pretrained.available())
def test_shipped_weights_score_their_published_figures_on_a_fixed_test_sample(name):
    meta = pretrained.info(name)
    published = meta["sample"]
    folder, marker = SOURCES[published["source"]]
    root = SHARED_DATA / folder
    if not (root / marker).exists():
        pytest.skip(f"{published['source']} not found at {root} (set FER_KERAS_SHARED_DATA)")
    measured = sample_accuracy(pretrained.load(name), published["source"], root, meta["classes"],
                                          meta["architecture"]["image_size"], flip_tta=meta.get("flip_tta", False))
    assert measured["n"] == published["n"] and measured["flip_tta"] == published["flip_tta"]
    # The same faces through the same weights: equal up to a few float round-offs across CPUs.
    assert measured["accuracy"] == pytest.approx(published["accuracy"], abs=0.01)
    # And the sample agrees with the whole-test figure on the card (~600 faces: one standard error is ~2 points).
    assert measured["accuracy"] == pytest.approx(meta["test"]["accuracy"], abs=0.05)


def test_the_default_model_ships_a_fer2013_sample_of_595_faces():
    assert pretrained.info()["sample"]["source"] == "fer2013" and pretrained.info()["sample"]["n"] == 595
