"""Readers on small datasets the tests lay out in each dataset's documented layout."""

from pathlib import Path

import numpy as np
import pytest

from fer_keras.data.readers.common import DatasetError
from fer_keras.data.readers.fer2013 import read_fer2013
from fer_keras.data.readers.ferplus import majority_label, read_ferplus
from fer_keras.data.readers.folders import read_affectnet, read_ckplus, read_folders
from fer_keras.data.readers.rafdb import read_rafdb
from fer_keras.data.sources import DataConfig, assign_splits


def _fer2013_tree(root: Path, write):
    write(root / "train" / "happy" / "Training_1.jpg")
    write(root / "train" / "neutral" / "Training_2.jpg")
    write(root / "train" / "angry" / "Training_3.jpg")
    write(root / "test" / "happy" / "PublicTest_4.jpg")
    write(root / "test" / "sad" / "PrivateTest_5.jpg")
    (root / "train" / "happy" / "notes.txt").write_text("not an image")
    return root


def test_fer2013_folders_whole_test_protocol(tmp_path, image_writer):
    records, report = read_fer2013(str(_fer2013_tree(tmp_path, image_writer)))
    by_name = {Path(r.path).name: r for r in records}
    assert set(by_name) == {
        "Training_1.jpg",
        "Training_2.jpg",
        "Training_3.jpg",
        "PublicTest_4.jpg",
        "PrivateTest_5.jpg",
    }
    assert by_name["Training_1.jpg"].emotion == "happiness" and by_name["Training_1.jpg"].split == "train"
    assert by_name["PublicTest_4.jpg"].split == "test" and by_name["PublicTest_4.jpg"].subset == "PublicTest"
    assert by_name["PrivateTest_5.jpg"].split == "test" and by_name["PrivateTest_5.jpg"].emotion == "sadness"
    assert report.skipped["not an image file"] == 1


def test_fer2013_standard_protocol_validates_on_publictest(tmp_path, image_writer):
    records, _ = read_fer2013(str(_fer2013_tree(tmp_path, image_writer)), protocol="standard")
    splits = {Path(r.path).name: r.split for r in records}
    assert splits["PublicTest_4.jpg"] == "val" and splits["PrivateTest_5.jpg"] == "test"


def _csv_row(emotion, usage, value=7, side=48):
    return f"{emotion},{' '.join([str(value)] * side * side)},{usage}"


def test_fer2013_csv_with_and_without_header(tmp_path):
    rows = [_csv_row(3, "Training"), _csv_row(0, "PublicTest"), _csv_row(6, "PrivateTest")]
    with_header = tmp_path / "a.csv"
    with_header.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    without = tmp_path / "b.csv"
    without.write_text("\n".join(rows) + "\n")
    for path in (with_header, without):
        records, report = read_fer2013(str(path))
        assert [r.emotion for r in records] == ["happiness", "anger", "neutral"]  # the first row is never lost
        assert [r.split for r in records] == ["train", "test", "test"]
        assert records[0].pixels.shape == (48, 48) and records[0].pixels.dtype == np.uint8
        assert not report.skipped


def test_fer2013_csv_malformed_rows_are_skipped_and_counted(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join([
        "emotion,pixels,Usage",
        _csv_row(3, "Training"),
        "9," + " ".join(["1"] * 4) + ",Training",          # unknown emotion id
        "2,1 2 3,Training",                                    # not a square
        "2,1 2 x 4,Training",                                  # not numbers
        "2," + " ".join(["300"] * 4) + ",Training",         # out of range
        _csv_row(1, "Elsewhere"),                              # unknown usage
        "4",                                                   # too few fields
    ]) + "\n")
    records, report = read_fer2013(str(path))
    assert len(records) == 1
    assert sum(report.skipped.values()) == 6


def test_fer2013_missing_layout_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="Kaggle layout"):
        read_fer2013(str(tmp_path))
    with pytest.raises(DatasetError, match="unknown FER2013 protocol"):
        read_fer2013(str(tmp_path), protocol="mine")


@pytest.mark.parametrize("votes,expected", [
    ([4, 0, 0, 1, 3, 2, 0, 0, 0, 0], None),          # 4 of 9 after zeroing the single vote: no majority
    ([6, 0, 1, 1, 0, 0, 0, 0, 2, 0], "neutral"),     # 6 of 8
    ([0, 9, 0, 0, 0, 0, 0, 0, 1, 0], "happiness"),
    ([0, 0, 0, 0, 0, 0, 0, 0, 8, 2], None),          # mostly "unknown"
    ([0, 0, 0, 0, 0, 0, 0, 0, 2, 8], None),          # "not a face"
    ([5, 5, 0, 0, 0, 0, 0, 0, 0, 0], None),          # a tie is not more than half
    ([0, 0, 0, 0, 0, 0, 0, 7, 3, 0], "contempt"),
])
def test_ferplus_majority_rule(votes, expected):
    assert majority_label(np.array(votes))[0] == expected


def test_ferplus_reader(tmp_path, image_writer):
    for folder in ("FER2013Train", "FER2013Test"):
        image_writer(tmp_path / folder / "fer0000001.png")
        image_writer(tmp_path / folder / "fer0000002.png")
    (tmp_path / "FER2013Train" / "label.csv").write_text(
        'fer0000001.png,"(0, 0, 48, 48)",0,8,2,0,0,0,0,0,0,0\n'
        'fer0000002.png,"(0, 0, 48, 48)",4,0,0,1,3,2,0,0,0,0\n'
        '../escape.png,"(0, 0, 48, 48)",0,9,0,0,0,0,0,0,1,0\n'
        'short,row\n')
    (tmp_path / "FER2013Test" / "label.csv").write_text('fer0000002.png,"(0, 0, 48, 48)",1,0,0,9,0,0,0,0,0,0\n')
    records, report = read_ferplus(str(tmp_path))
    assert [(r.split, r.emotion) for r in records] == [("train", "happiness"), ("test", "sadness")]
    assert records[0].votes == {"happiness": 8.0, "surprise": 2.0}
    assert report.skipped["image name outside its folder"] == 1
    assert report.skipped["no FER+ majority (or unknown / not a face)"] == 1
    assert report.skipped["label.csv row with fewer than ten vote counts"] == 1


def test_rafdb_official_layout(tmp_path, image_writer):
    image_writer(tmp_path / "Image" / "aligned" / "train_00001_aligned.jpg")
    image_writer(tmp_path / "Image" / "aligned" / "test_0001_aligned.jpg")
    (tmp_path / "EmoLabel").mkdir()
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text(
        "train_00001.jpg 4\ntest_0001.jpg 7\ntrain_00002.jpg 1\ntrain_00003.jpg 9\n")
    records, report = read_rafdb(str(tmp_path))
    assert [(r.split, r.emotion) for r in records] == [("train", "happiness"), ("test", "neutral")]
    assert report.skipped["labelled image missing"] == 1
    assert report.skipped["label id outside 1..7"] == 1


def test_rafdb_dataset_folders_layout(tmp_path, image_writer):
    image_writer(tmp_path / "DATASET" / "train" / "1" / "a.jpg")
    image_writer(tmp_path / "DATASET" / "test" / "6" / "b.jpg")
    records, _ = read_rafdb(str(tmp_path))
    assert sorted((r.split, r.emotion) for r in records) == [("test", "anger"), ("train", "surprise")]


def test_rafdb_unknown_layout(tmp_path):
    with pytest.raises(DatasetError, match="list_patition_label.txt"):
        read_rafdb(str(tmp_path))


def test_affectnet_names_numbers_and_val_as_test(tmp_path, image_writer):
    image_writer(tmp_path / "train" / "happy" / "1.jpg")
    image_writer(tmp_path / "train" / "3" / "2.jpg")
    image_writer(tmp_path / "val" / "contempt" / "3.jpg")
    records, _ = read_affectnet(str(tmp_path))
    assert sorted((r.split, r.emotion) for r in records) == [
        ("test", "contempt"),
        ("train", "happiness"),
        ("train", "surprise"),
    ]


def test_ckplus_splits_by_subject(tmp_path, image_writer):
    for s in range(10):
        for frame in range(3):
            image_writer(tmp_path / ("happy" if s % 2 else "anger") / f"S{s:03d}_001_0000000{frame}.png")
    records, _ = read_ckplus(str(tmp_path))
    assert {r.split for r in records} == {""} and len({r.group for r in records}) == 10
    assign_splits(records, DataConfig(test_fraction=0.2, val_fraction=0.2, seed=3))
    subjects = {split: {r.group for r in records if r.split == split} for split in ("train", "val", "test")}
    assert all(subjects.values())
    assert not (subjects["train"] & subjects["test"]) and not (subjects["train"] & subjects["val"])
    assert not (subjects["val"] & subjects["test"])


def test_folders_with_a_user_label_map(tmp_path, image_writer):
    image_writer(tmp_path / "joyful" / "a.png")
    image_writer(tmp_path / "grumpy" / "b.png")
    image_writer(tmp_path / "mystery" / "c.png")
    records, report = read_folders(str(tmp_path), label_map={"Joyful": "happiness", "grumpy": "anger"})
    assert sorted(r.emotion for r in records) == ["anger", "happiness"]
    assert report.skipped["unknown class folder 'mystery'"] == 1
    with pytest.raises(DatasetError, match="not one of"):
        read_folders(str(tmp_path), label_map={"joyful": "glee"})


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="is not a directory"):
        read_ckplus(str(tmp_path / "nope"))
