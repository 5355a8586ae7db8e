"""Aggregating sources: splits, counts table, integrity findings."""

import pytest

from fer_keras.data.readers.common import DatasetError
from fer_keras.data.sources import DataConfig, load_data, parse_source
from fer_keras.data.synthetic import synthetic_records, write_class_folders


def test_parse_source():
    assert parse_source("fer2013=/x/y") == ("fer2013", "/x/y")
    assert parse_source("synthetic") == ("synthetic", "")
    with pytest.raises(DatasetError, match="unknown data source 'imagenet'"):
        parse_source("imagenet=/x")
    with pytest.raises(DatasetError, match="needs a path"):
        parse_source("rafdb")


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_data(DataConfig(sources=(f"rafdb={tmp_path / 'nope'}",)), progress=False)


def test_aggregation_table_and_leakage(tmp_path):
    # Two folder datasets; the second's test split holds copies of the first's training faces.
    records = synthetic_records(per_class=10, size=48, seed=1)
    write_class_folders(tmp_path / "a", records)
    leaky = tmp_path / "b"
    write_class_folders(leaky, [r for r in records if r.split == "train"][:5])
    (leaky / "train").rename(leaky / "test")
    write_class_folders(tmp_path / "b_train", synthetic_records(per_class=4, size=48, seed=2))
    (tmp_path / "b_train" / "train").rename(leaky / "train")
    data = load_data(
        DataConfig(sources=(f"folders={tmp_path / 'a'}", f"folders={leaky}"), image_size=32), progress=False
    )
    table = {(row["source"], row["split"]): row for row in data.table}
    assert table[("all", "train")]["total"] == len(data.splits["train"])
    a_test = sum(r.split == "test" for r in records)
    assert table[("all", "test")]["total"] == len(data.splits["test"]) == a_test + 5
    assert data.integrity.leaked["test"] == 5
    assert data.integrity.duplicate_groups >= 5
    csv_path = tmp_path / "table.csv"
    data.save_table(csv_path)
    assert csv_path.read_text().splitlines()[0] == "source,split,happiness,surprise,sadness,anger,disgust,fear,total"


def test_validation_is_carved_stratified_and_seeded(tmp_path):
    records = synthetic_records(per_class=20, size=32, seed=0, splits=(("train", 1.0),))
    write_class_folders(tmp_path / "d", records)
    config = DataConfig(sources=(f"folders={tmp_path / 'd'}",), image_size=32, val_fraction=0.25, seed=5)
    a = load_data(config, progress=False)
    b = load_data(config, progress=False)
    assert a.splits["val"].class_counts() == {c: 5 for c in a.taxonomy.classes}
    assert sorted(a.splits["val"].names) == sorted(b.splits["val"].names)
    assert not set(a.splits["val"].names) & set(a.splits["train"].names)


def test_synthetic_default_has_all_splits():
    data = load_data(DataConfig(synthetic_per_class=10, image_size=32), progress=False)
    assert set(data.splits) == {"train", "val", "test"}
    assert data.splits["train"].images.shape[1:] == (32, 32, 1)
    assert data.integrity.leaked == {"val": 0, "test": 0}
