"""The robustness shifts and the robust augmentation: shapes, seeding, and that each shift does what it says."""

import numpy as np
import pytest

from fer_keras.data import shifts
from fer_keras.data.faces import load_faces
from fer_keras.data.pipeline import make_dataset, robust_strength
from fer_keras.data.synthetic import synthetic_records
from fer_keras.data.taxonomy import SIX


def square_face(side=64, inner=32, value=220, ground=40):
    """A bright centred square of ``inner`` pixels on a flat ground: its size and place are easy to measure."""
    face = np.full((side, side), ground, np.uint8)
    lo = (side - inner) // 2
    face[lo:lo + inner, lo:lo + inner] = value
    return face


def textured(n=6, side=64, seed=0, cells=8):
    rng = np.random.default_rng(seed)
    coarse = rng.integers(20, 235, (n, cells, cells)).astype(np.float32)
    import cv2

    return (
        np.stack([cv2.resize(c, (side, side), interpolation=cv2.INTER_CUBIC) for c in coarse])
        .clip(0, 255)
        .astype(np.uint8)[..., None]
    )


@pytest.mark.parametrize("name", list(shifts.SHIFTS))
def test_every_shift_keeps_shape_and_is_seeded_per_face(name):
    faces = textured()
    a = shifts.apply_shift(faces, name, 3, seed=1)
    b = shifts.apply_shift(faces, name, 3, seed=1)
    assert a.shape == faces.shape and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)  # every model of a report sees the same faces
    assert not np.array_equal(a, faces)
    if name == "high-resolution":
        return  # its effect is aliasing of fine detail, which depends on the content more than on the size
    # Stronger severities move the faces further from the originals.
    mild = np.abs(shifts.apply_shift(faces, name, 1, seed=1).astype(float) - faces).mean()
    strong = np.abs(shifts.apply_shift(faces, name, 5, seed=1).astype(float) - faces).mean()
    assert strong > mild


@pytest.mark.parametrize(
    "name,severity,message",
    [
        ("twirl", 1, "unknown shift 'twirl'"),
        ("blur", 0, "severity must be 1 to 5"),
        ("blur", 6, "severity must be 1 to 5"),
    ],
)
def test_bad_shift_or_severity_is_a_clear_error(name, severity, message):
    with pytest.raises(ValueError, match=message):
        shifts.apply_shift(textured(1), name, severity)


def bright_area(face, threshold=130):
    return int((face > threshold).sum())


def test_framing_shifts_scale_and_move_the_face():
    face = square_face()[None, ..., None]
    area = bright_area(face)
    loose = shifts.apply_shift(face, "loose", 5)[0, ..., 0]  # face at half its size
    tight = shifts.apply_shift(face, "tight", 5)[0, ..., 0]  # face at 1.6 times
    assert bright_area(loose) == pytest.approx(area * 0.25, rel=0.15)
    assert bright_area(tight) == pytest.approx(area * 1.6 ** 2, rel=0.15)
    small = square_face(inner=16)[None, ..., None]
    moved = shifts.apply_shift(small, "off-centre", 5)[0, ..., 0]  # by a quarter of the side
    ys, xs = np.nonzero(moved > 200)  # the square, not the generated background around it
    shift = np.hypot(np.median(ys) - 31.5, np.median(xs) - 31.5)
    assert shift == pytest.approx(0.25 * 64, rel=0.15)
    squeezed = shifts.apply_shift(face, "aspect", 5)[0, ..., 0]
    ys, xs = np.nonzero(squeezed > 130)
    ratio = (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)
    assert max(ratio, 1 / ratio) == pytest.approx(1.6, rel=0.12)


def test_loose_framing_fills_with_background_not_mirrored_face():
    face = square_face(inner=44)[None, ..., None]  # bright up to near the edge: mirroring would show it outside
    loose = shifts.apply_shift(face, "loose", 5)[0, ..., 0]
    border = np.concatenate([loose[:6].ravel(), loose[-6:].ravel()])
    assert (border > 200).mean() < 0.05


def test_camera_and_light_shifts():
    faces = textured(cells=24)
    sharpness = lambda x: np.abs(np.diff(x.astype(float), axis=2)).mean()  # noqa: E731
    assert sharpness(shifts.apply_shift(faces, "blur", 5)) < 0.6 * sharpness(faces)
    assert shifts.apply_shift(faces, "contrast", 5).std() < 0.4 * faces.std()
    low = shifts.apply_shift(faces, "low-resolution", 5)  # 16 px: 4x4 blocks nearly flat
    assert sharpness(low) < sharpness(faces)
    jpeg5 = np.abs(shifts.apply_shift(faces, "jpeg", 5).astype(float) - faces).mean()
    jpeg1 = np.abs(shifts.apply_shift(faces, "jpeg", 1).astype(float) - faces).mean()
    assert jpeg5 > 2 * jpeg1


def test_occluders_cover_about_the_stated_share():
    face = np.full((1, 64, 64, 1), 128, np.uint8)
    hand = shifts.apply_shift(face, "occlusion-hand", 5)[0, ..., 0]
    assert (np.abs(hand.astype(int) - 128) > 8).mean() == pytest.approx(0.24, abs=0.08)
    glasses = shifts.apply_shift(face, "occlusion-glasses", 5)[0, ..., 0]
    rows = np.nonzero((glasses < 60).any(axis=1))[0]
    assert 0.3 * 64 < rows.mean() < 0.5 * 64  # at eye level


def test_mixed_shifts_cover_the_suite():
    faces = np.repeat(textured(1), 300, axis=0)
    out, chosen = shifts.mixed_shifts(faces, seed=0)
    assert out.shape == faces.shape
    assert {name for name, _ in chosen} == set(shifts.SHIFTS)
    assert {s for _, s in chosen} == {1, 2, 3, 4, 5}


def test_the_per_face_reference_changes_most_faces_and_keeps_some_clean():
    faces = np.repeat(textured(1), 400, axis=0).astype(np.float32)
    out = shifts.robust_augment_per_face(faces, np.random.default_rng(0))
    assert out.shape == faces.shape and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    unchanged = np.all(out == faces, axis=(1, 2, 3)).mean()
    assert 0.12 < unchanged < 0.3  # one face in five stays clean
    assert shifts.robust_augment_per_face(faces[:4], np.random.default_rng(0), strength=0.0).shape == (4, 64, 64, 1)


def test_pipeline_applies_robust_only_when_named():
    assert robust_strength(("flip",)) == 0.0
    assert robust_strength(("flip", "robust"), 0.5) == 0.5
    with pytest.raises(ValueError, match="unknown augmentation"):
        robust_strength(("robustt",))
    faces, _, _ = load_faces(synthetic_records(8, SIX, 48, 0), SIX, 48, progress=False)
    plain = next(iter(make_dataset(faces, 48, training=True, seed=0)))[0].numpy()
    robust = next(iter(make_dataset(faces, 48, training=True, seed=0, robust=1.0)))[0].numpy()
    assert plain.shape == robust.shape == (48, 48, 48, 1)
    changed = np.any(plain != robust, axis=(1, 2, 3)).mean()
    assert changed > 0.6
    # Evaluation batches are never augmented.
    val = next(iter(make_dataset(faces, 48, robust=1.0)))[0].numpy()
    np.testing.assert_array_equal(val, faces.images.astype(np.float32))
