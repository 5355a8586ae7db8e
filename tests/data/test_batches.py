"""FaceBatches: the NumPy feed of training on backends without tf.data."""

import numpy as np
import pytest

from fer_keras.data.batches import FaceBatches


def _faces(n=20, size=32):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 1)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[np.arange(n) % 3]
    return images, targets


def test_every_face_once_per_epoch_in_a_new_order_each_epoch():
    images, targets = _faces()
    feed = FaceBatches(images, targets, batch_size=6, seed=3)
    assert len(feed) == 4
    def epoch_rows():
        batches = [feed[i] for i in range(len(feed))]
        faces = np.concatenate([b[0] for b in batches])
        assert [len(b[0]) for b in batches] == [6, 6, 6, 2]
        assert all(np.array_equal(b[1]["logits"], b[1]["probabilities"]) for b in batches)
        return [int(np.flatnonzero((images == f).all(axis=(1, 2, 3)))[0]) for f in faces]

    first = epoch_rows()
    assert sorted(first) == list(range(20))
    feed.on_epoch_end()
    second = epoch_rows()
    assert sorted(second) == list(range(20)) and second != first
    assert epoch_rows() == second
    again = FaceBatches(images, targets, batch_size=6, seed=3)  # seeded: the same order for the same epoch
    assert [int(np.flatnonzero((images == f).all(axis=(1, 2, 3)))[0]) for f in again[0][0]] == first[:6]


def test_robust_batches_change_the_faces_the_same_way_for_the_same_epoch_and_batch():
    images, targets = _faces()
    feed = FaceBatches(images, targets, batch_size=10, robust=1.0, seed=1)
    plain = FaceBatches(images, targets, batch_size=10, seed=1)
    x, y = feed[0]
    assert x.shape == (10, 32, 32, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255
    assert not np.array_equal(x, plain[0][0])  # about four faces in five are changed
    assert np.array_equal(y["logits"], plain[0][1]["logits"])  # the targets stay with their faces
    assert np.array_equal(feed[0][0], x)  # the same faces whichever thread asks
    rows = feed._order[:10].copy()
    feed.on_epoch_end()
    feed._order[:10] = rows  # the same faces in the next epoch are changed another way
    assert not np.array_equal(feed[0][0], x)


def test_bad_arguments_are_named():
    images, targets = _faces()
    with pytest.raises(ValueError, match="20 faces but 19 targets"):
        FaceBatches(images, targets[:19], 4)
    with pytest.raises(ValueError, match="batch size must be at least 1"):
        FaceBatches(images, targets, 0)
