import numpy as np
import pytest

from fer_keras.data.faces import load_faces
from fer_keras.data.pipeline import augmentation, class_weights, make_dataset
from fer_keras.data.synthetic import synthetic_records
from fer_keras.data.taxonomy import SIX


@pytest.fixture(scope="module")
def faces():
    return load_faces(synthetic_records(per_class=4, size=32, seed=0), SIX, 32, progress=False)[0]


def test_batches_have_model_ready_shapes(faces):
    x, y = next(iter(make_dataset(faces, 5)))
    assert x.shape == (5, 32, 32, 1) and x.dtype.name == "float32"
    assert set(y) == {"logits", "probabilities"} and y["logits"].shape == (5, 6)
    np.testing.assert_array_equal(x.numpy()[..., 0], faces.images[:5, ..., 0])  # no shuffle outside training


def test_training_shuffles_and_flips(faces):
    flip = augmentation(("flip",), seed=1)
    xs = np.concatenate([b[0].numpy() for b in make_dataset(faces, 8, training=True, augment=flip)])
    assert xs.shape[0] == len(faces)
    flipped = faces.images[..., ::-1, :].astype(np.float32)
    originals = faces.images.astype(np.float32)
    n_flipped = sum(any(np.array_equal(x, f) for f in flipped) and not any(np.array_equal(x, o) for o in originals) for x in xs)
    assert 0 < n_flipped < len(faces)


def test_sample_weights_and_soft_labels(faces):
    w = class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(w, [4 / 9, 4 / 3, 0])
    x, y, sw = next(iter(make_dataset(faces, 4, weights=np.arange(6, dtype=np.float32))))
    np.testing.assert_array_equal(sw.numpy(), faces.labels[:4].astype(np.float32))
    _, ys = next(iter(make_dataset(faces, 4, soft_labels=True)))
    np.testing.assert_allclose(ys["logits"].numpy(), faces.soft[:4])


def test_unknown_augmentation():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmentation(("flip", "twirl"))
    assert augmentation(()) is None
