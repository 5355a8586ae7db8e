"""Real FER2013 and FER+ from ../shared/data: counts, taxonomy, integrity, a short training run.

Skipped where the data is absent (a user's fresh clone).
"""

from collections import Counter
from pathlib import Path

import pytest

from fer_keras.data.faces import load_faces
from fer_keras.data.readers.fer2013 import read_fer2013
from fer_keras.data.readers.ferplus import read_ferplus
from fer_keras.data.sources import DataConfig, load_data
from fer_keras.data.taxonomy import SEVEN, SIX
from tests.conftest import FER2013, FERPLUS, requires_fer2013, requires_ferplus

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def fer2013_seven():
    return load_data(DataConfig(sources=(f"fer2013={FER2013}",), classes="seven"), progress=False)


@requires_fer2013
def test_fer2013_reader_counts():
    records, report = read_fer2013(str(FER2013))
    assert not report.skipped
    by_subset = Counter(r.subset for r in records)
    assert by_subset["Training"] == 28_709 and by_subset["PublicTest"] + by_subset["PrivateTest"] == 7_178
    test = Counter(r.emotion for r in records if r.split == "test")
    assert test == {"happiness": 1774, "neutral": 1233, "sadness": 1247, "fear": 1024, "anger": 958,
                    "surprise": 831, "disgust": 111}
    # 28,709 - 4,965 neutral = 23,744. The paper's 23,743 is one short: its loader read a
    # header-less CSV as having a header and lost the first image.
    assert sum(SIX.index(r.emotion) is not None for r in records if r.split == "train") == 23_744
    assert sum(SIX.index(r.emotion) is not None for r in records if r.split == "test") == 5_945


@requires_fer2013
def test_fer2013_integrity_matches_the_known_faults(fer2013_seven):
    integrity = fer2013_seven.integrity
    assert integrity.leaked["test"] == 568           # test faces with a copy in Training
    assert integrity.duplicate_groups == 1_516
    assert integrity.conflicting_groups == 57
    assert len(integrity.blank) == 13
    assert not integrity.unreadable
    splits = fer2013_seven.splits
    assert len(splits["train"]) + len(splits["val"]) == 28_709 and len(splits["test"]) == 7_178


@requires_fer2013
def test_six_class_view_drops_and_counts_neutral():
    records, _ = read_fer2013(str(FER2013))
    sample = [r for r in records if r.split == "test"][::17][:400]  # every class
    faces, dropped, _ = load_faces(sample, SIX, 64, progress=False)
    assert dropped == {"neutral": sum(r.emotion == "neutral" for r in sample)} and dropped["neutral"] > 0
    assert len(faces) + dropped["neutral"] == 400
    assert faces.images.shape[1:] == (64, 64, 1)


@requires_ferplus
def test_ferplus_majority_counts_on_the_test_folder():
    records, report = read_ferplus(str(FERPLUS))
    test = Counter(r.emotion for r in records if r.split == "test")
    assert sum(test.values()) == 3_137
    assert test == {"neutral": 1083, "happiness": 892, "surprise": 394, "sadness": 382, "anger": 269,
                    "disgust": 16, "fear": 86, "contempt": 15}
    faces, dropped, unreadable = load_faces([r for r in records if r.split == "test"], SEVEN, 48, progress=False)
    assert len(faces) == 3_122 and dropped == {"contempt": 15} and not unreadable


@requires_fer2013
def test_a_few_hundred_real_faces_train(tmp_path):
    from fer_keras.config import TrainConfig
    from fer_keras.training import train

    records, _ = read_fer2013(str(FER2013))
    picked = []
    for emotion in SIX.classes:
        picked += [r for r in records if r.emotion == emotion and r.split == "train"][:60]
    subset = tmp_path / "fer_subset"
    for r in picked:  # a small class-folder copy under tmp (never in the repository)
        target = subset / "train" / r.emotion / Path(r.path).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(Path(r.path).read_bytes())
    config = TrainConfig(
        model="baseline",
        width=0.25,
        data=DataConfig(sources=(f"folders={subset}",), val_fraction=0.2),
        epochs=3,
        batch_size=32,
        optimizer="adam",
        learning_rate=1e-3,
        run_dir=str(tmp_path / "run"),
        export_base="",
    )
    result = train(config, verbose=0, progress=False)
    losses = [h["loss"] for h in result.state.history]
    assert losses[-1] < losses[0]
