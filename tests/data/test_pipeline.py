import dataclasses

import numpy as np
import pytest

from fer_keras.data.faces import load_faces
from fer_keras.data.pipeline import augmentation, class_weights, make_dataset, mixer
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
    n_flipped = sum(
        any(np.array_equal(x, f) for f in flipped) and not any(np.array_equal(x, o) for o in originals) for x in xs
    )
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


@pytest.mark.parametrize("names", [("mixup",), ("cutmix",), ("flip", "mixup", "cutmix")])
def test_mixing_weights_targets_by_the_share_of_each_face(faces, names):
    # Every face is one flat gray level, 40 * its class: a mixed face's mean level
    # must equal 40 * the class its mixed target points to on average.
    # The mixing draws (partners, Beta weights) come from TensorFlow's global generator: seeded here so the
    # count of blended faces below hardly depends on the tests that ran before (unseeded, 1.7 % of 60 draws
    # blended 6 of 24 faces or fewer, median 13; seeded, 10-11 whatever ran first).
    import tensorflow as tf

    tf.random.set_seed(0)
    levels = (40 * faces.labels).astype(np.uint8)
    flat = dataclasses.replace(faces, images=np.broadcast_to(levels[:, None, None, None], faces.images.shape).copy())
    ds = make_dataset(flat, 8, training=True, augment=augmentation(names, seed=0), mix=mixer(names),
                      weights=np.arange(6, dtype=np.float32))
    mixed = 0
    for x, y, w in ds:
        x, y, w = x.numpy(), y["logits"].numpy(), w.numpy()
        np.testing.assert_allclose(y.sum(1), 1, atol=1e-5)
        expected = y @ (40 * np.arange(6))
        np.testing.assert_allclose(x.mean((1, 2, 3)), expected, atol=1e-3)
        np.testing.assert_allclose(w, y @ np.arange(6), atol=1e-5)  # sample weights mix like the targets
        mixed += int((y.max(1) < 0.999).sum())
    assert mixed > len(faces) // 4, "most faces should be blended with another"


def test_mixing_only_when_named():
    assert mixer(("flip", "rotate")) is None and mixer(("mixup",), strength=0) is None
    assert augmentation(("mixup",)) is None  # no per-face layers for mixing names
    with pytest.raises(ValueError, match="unknown augmentation"):
        mixer(("mixup", "blend"))


def test_mixing_after_bfloat16_augmentation(faces):
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")  # the random layers then return bfloat16 faces
    try:
        names = ("flip", "cutmix", "mixup")
        x, y, w = next(iter(make_dataset(faces, 8, training=True, augment=augmentation(names, seed=0), mix=mixer(names),
                                         weights=np.ones(6, np.float32))))
    finally:
        keras.mixed_precision.set_global_policy(previous)
    assert x.shape == (8, 32, 32, 1) and y["logits"].dtype.name == "float32"
    np.testing.assert_allclose(y["logits"].numpy().sum(1), 1, atol=1e-5)
