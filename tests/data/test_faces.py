"""Decoding: every kind of bad file is skipped and counted, odd formats decode."""

import cv2
import numpy as np
from PIL import Image

from fer_keras.data.faces import decode_gray, load_faces
from fer_keras.data.records import Record
from fer_keras.data.taxonomy import SEVEN, SIX


def _record(path, emotion="happiness"):
    return Record(source="t", split="train", emotion=emotion, path=str(path))


def test_bad_files_are_skipped_and_named(tmp_path, image_writer):
    good = image_writer(tmp_path / "good.jpg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"\x89PNG not really" * 10)
    missing = tmp_path / "missing.png"
    records = [_record(p) for p in (good, truncated, empty, garbage, missing)]
    faces, dropped, unreadable = load_faces(records, SIX, 64, progress=False)
    assert len(faces) == 1 and faces.names[0] == str(good)
    assert sorted(unreadable) == sorted(str(p) for p in (truncated, empty, garbage, missing))
    assert not dropped


def test_odd_formats_decode(tmp_path):
    rng = np.random.default_rng(0)
    sixteen = tmp_path / "sixteen.png"
    cv2.imwrite(str(sixteen), rng.integers(0, 65535, (40, 40), dtype=np.uint16))
    palette = tmp_path / "palette.png"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).convert("P").save(palette)
    rgba = tmp_path / "rgba.png"
    cv2.imwrite(str(rgba), rng.integers(0, 255, (40, 40, 4), dtype=np.uint8))
    wrong_ext = tmp_path / "really_png.jpg"
    cv2.imwrite(str(tmp_path / "x.png"), rng.integers(0, 255, (40, 40), dtype=np.uint8))
    wrong_ext.write_bytes((tmp_path / "x.png").read_bytes())
    huge = tmp_path / "huge.png"
    cv2.imwrite(str(huge), np.full((3000, 2000), 90, np.uint8))
    for path in (sixteen, palette, rgba, wrong_ext, huge):
        gray = decode_gray(path.read_bytes())
        assert gray is not None and gray.ndim == 2 and gray.dtype == np.uint8, path
    faces, _, unreadable = load_faces(
        [_record(p) for p in (sixteen, palette, rgba, wrong_ext, huge)], SIX, 32, progress=False
    )
    assert not unreadable and faces.images.shape == (5, 32, 32, 1)


def test_labels_outside_the_view_are_dropped_and_counted(tmp_path, image_writer):
    a = image_writer(tmp_path / "a.png")
    records = [_record(a, "neutral"), _record(a, "neutral"), _record(a, "contempt"), _record(a, "fear")]
    faces, dropped, _ = load_faces(records, SIX, 48, progress=False)
    assert len(faces) == 1 and dropped == {"neutral": 2, "contempt": 1}
    faces, dropped, _ = load_faces(records, SEVEN, 48, progress=False)
    assert len(faces) == 3 and dropped == {"contempt": 1}


def test_blank_faces_are_flagged_and_duplicates_share_a_digest(tmp_path, image_writer):
    blank = image_writer(tmp_path / "blank.png", value=128)
    a = image_writer(tmp_path / "a.png", seed=1)
    a_copy = tmp_path / "a_copy.png"
    a_copy.write_bytes(a.read_bytes())
    b = image_writer(tmp_path / "b.png", seed=2)
    faces, _, _ = load_faces([_record(p) for p in (blank, a, a_copy, b)], SIX, 48, progress=False)
    assert faces.blank.tolist() == [True, False, False, False]
    assert faces.digests[1] == faces.digests[2] != faces.digests[3]


def test_soft_targets_follow_the_votes_inside_the_view():
    pixels = np.zeros((48, 48), np.uint8)
    r = Record("ferplus", "train", "happiness", pixels=pixels, votes={"happiness": 6, "neutral": 2, "contempt": 2})
    faces, _, _ = load_faces([r], SIX, 48, progress=False)
    np.testing.assert_allclose(faces.soft[0], [1, 0, 0, 0, 0, 0])
    faces, _, _ = load_faces([r], SEVEN, 48, progress=False)
    np.testing.assert_allclose(faces.soft[0], [0.75, 0, 0, 0, 0, 0, 0.25])
