"""The vectorised robust augmentation against its per-face reference (fer_keras.data.shifts.robust_face)."""

import cv2
import numpy as np
import pytest

from fer_keras.data import robust, shifts
from fer_keras.data.batches import FaceBatches
from fer_keras.data.faces import load_faces
from fer_keras.data.synthetic import synthetic_records
from fer_keras.data.taxonomy import SIX


@pytest.fixture(scope="module")
def faces():
    """600 synthetic 48 px faces (features, shading, texture), as float32 [N, 48, 48, 1]."""
    loaded, _, _ = load_faces(synthetic_records(100, SIX, 48, 0, splits=(("train", 1.0),)), SIX, 48, progress=False)
    return loaded.images.astype(np.float32)


@pytest.mark.parametrize("sigma", [0.3, 0.9, 1.7, 2.4, 3.0])
@pytest.mark.parametrize("uint8", [True, False])
def test_blur_matrices_are_opencvs_gaussian_blur(sigma, uint8):
    image = np.random.default_rng(0).integers(0, 256, (48, 48)).astype(np.uint8 if uint8 else np.float32)
    expected = cv2.GaussianBlur(image, (0, 0), sigma).astype(np.float32)
    k = robust.gaussian_matrices(np.array([sigma]), 48, uint8=uint8)[0]
    got = k @ image.astype(np.float32) @ k.T
    # uint8: OpenCV's fixed-point kernel and rounding; float: the same kernel to rounding error
    assert np.abs((np.rint(got) if uint8 else got) - expected).max() <= (1.0 if uint8 else 1e-3)


@pytest.mark.parametrize("interpolation,src,dst", [(cv2.INTER_AREA, 48, 20), (cv2.INTER_LINEAR, 20, 48),
                                                   (cv2.INTER_CUBIC, 5, 48)])
def test_resize_matrices_are_opencvs_resize(interpolation, src, dst):
    image = np.random.default_rng(1).uniform(0, 255, (src, src)).astype(np.float32)
    m = robust.resize_matrix(src, dst, interpolation)
    np.testing.assert_allclose(m @ image @ m.T, cv2.resize(image, (dst, dst), interpolation=interpolation),
                               atol=1e-3)


def test_reframing_samples_as_warp_affine_does(faces):
    """Tight crops, tilts and box ratios (no background uncovered) against shifts.reframe face by face."""
    rng = np.random.default_rng(2)
    n = 40
    scale, angle = rng.uniform(1.25, 1.45, n), rng.uniform(-8, 8, n)
    aspect, dx, dy = rng.uniform(0.95, 1.05, n), rng.uniform(-0.02, 0.02, n), rng.uniform(-0.02, 0.02, n)
    batch = faces[:n, ..., 0]
    got = robust._reframe(batch, rng, scale, dx, dy, aspect, angle)
    want = np.stack([shifts.reframe(batch[i].astype(np.uint8), rng, scale=scale[i], dx=dx[i], dy=dy[i],
                                    aspect=aspect[i], angle=angle[i]) for i in range(n)])
    # Both sample at 1/32 pixel in fixed point, rounded in different places: a grey level or two apart
    # on a few steep edges.
    diff = np.abs(got - want)
    assert diff.mean() < 0.05 and (diff <= 1).mean() > 0.995 and diff.max() <= 8


def test_a_looser_crop_puts_background_around_the_whole_face(faces):
    batch = faces[:8, ..., 0]
    n = len(batch)
    out = robust._reframe(batch, np.random.default_rng(3), np.full(n, 0.5), np.zeros(n), np.zeros(n), np.ones(n),
                          np.zeros(n))
    # the face, shrunk to half size, sits in the middle as shifts.reframe puts it (away from the soft seam,
    # where each blends into its own random background); the outer ring is generated background
    want = np.stack([shifts.reframe(f.astype(np.uint8), np.random.default_rng(0), scale=0.5) for f in batch])
    diff = np.abs(out[:, 19:29, 19:29] - want[:, 19:29, 19:29])
    assert diff.mean() < 0.5 and diff.max() <= 8
    ring = np.concatenate([out[:, :4].reshape(n, -1), out[:, -4:].reshape(n, -1)], axis=1)
    assert (ring.std(axis=1) < 80).all() and not np.array_equal(ring, np.zeros_like(ring))


def _statistics(augmented: np.ndarray, clean: np.ndarray) -> dict:
    """Per-batch statistics of the four kinds of change the augmentation makes."""
    a, c = augmented[..., 0], clean[..., 0]
    centre = (slice(12, 36), slice(12, 36))
    return {
        "unchanged share": float(np.all(a == c, axis=(1, 2)).mean()),
        # framing: how far each face moved or was rescaled (mean absolute change of the centre)
        "framing change": float(np.abs(a[:, centre[0], centre[1]] - c[:, centre[0], centre[1]]).mean()),
        "edge change": float(np.abs(a[:, :, :4] - c[:, :, :4]).mean()),
        # light: mean level and contrast
        "brightness": float(a.mean()),
        "contrast": float(a.std(axis=(1, 2)).mean()),
        # camera: sharpness (mean absolute horizontal gradient)
        "sharpness": float(np.abs(np.diff(a, axis=2)).mean()),
        # occluders: dark glasses and bright hands cover blocks of near-uniform pixels
        "dark share": float((a < 40).mean()),
    }


@pytest.mark.parametrize("strength", [1.0, 1.5])
def test_the_vectorised_feed_keeps_the_reference_distribution(faces, strength):
    """Over 2,400 augmented faces (four seeds), each statistic of the vectorised feed is within a few per
    cent of the per-face reference's."""
    old = [_statistics(shifts.robust_augment_per_face(faces, np.random.default_rng(s), strength), faces)
           for s in range(4)]
    new = [_statistics(robust.robust_augment(faces, np.random.default_rng(100 + s), strength), faces)
           for s in range(4)]
    for key in old[0]:
        o, n = np.mean([r[key] for r in old]), np.mean([r[key] for r in new])
        spread = np.std([r[key] for r in old]) + np.std([r[key] for r in new])
        assert abs(n - o) <= max(0.06 * abs(o), 3 * spread), f"{key}: reference {o:.3f}, vectorised {n:.3f}"


def test_the_robust_augmentation_is_seeded_and_leaves_some_faces_clean(faces):
    a = robust.robust_augment(faces, np.random.default_rng(5))
    assert a.shape == faces.shape and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 255
    assert np.array_equal(a, robust.robust_augment(faces, np.random.default_rng(5)))
    assert 0.12 < np.all(a == faces, axis=(1, 2, 3)).mean() < 0.3
    assert np.array_equal(robust.robust_augment(faces[:4], np.random.default_rng(0), 0.0), faces[:4])


def test_chunked_feed_keeps_faces_with_their_targets_whatever_the_thread_count(faces):
    images = faces[:300]
    targets = np.eye(6, dtype=np.float32)[np.arange(300) % 6]
    one = FaceBatches(images, targets, batch_size=32, robust=1.0, seed=4, workers=1)
    three = FaceBatches(images, targets, batch_size=32, robust=1.0, seed=4, workers=3)
    try:
        for _epoch in range(2):
            unchanged = 0
            for i in range(len(one)):
                (x1, y1), (x3, _) = one[i], three[i]
                np.testing.assert_array_equal(x1, x3)
                rows = one._order[i * 32:(i + 1) * 32]
                np.testing.assert_array_equal(y1["logits"], targets[rows])
                unchanged += int(np.all(x1 == images[rows], axis=(1, 2, 3)).sum())
            assert 0.12 * len(images) < unchanged < 0.3 * len(images)  # clean faces sit in their own rows
            one.on_epoch_end()
            three.on_epoch_end()
    finally:
        one.close()
        three.close()
