"""Hostile and broken input to every reader and loader: skipped and counted, or one clear error."""

import string

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fer_keras.data.faces import load_faces
from fer_keras.data.readers.common import DatasetError, safe_join
from fer_keras.data.readers.fer2013 import read_fer2013_csv
from fer_keras.data.readers.ferplus import read_ferplus
from fer_keras.data.readers.folders import read_folders
from fer_keras.data.readers.rafdb import read_rafdb
from fer_keras.data.records import Record
from fer_keras.data.taxonomy import SIX
from fer_keras.loading import ModelLoadError, load_classifier

pytestmark = pytest.mark.reliability
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXT = st.text(alphabet=string.printable, max_size=200)


@SETTINGS
@given(blobs=st.lists(st.binary(max_size=300), min_size=1, max_size=6))
def test_arbitrary_bytes_as_images_never_crash_decoding(tmp_path, blobs):
    paths = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"f{i}.jpg"
        path.write_bytes(blob)
        paths.append(path)
    records = [Record("x", "train", "fear", path=str(p)) for p in paths]
    faces, _, unreadable = load_faces(records, SIX, 32, progress=False)
    assert len(faces) + len(unreadable) == len(paths)


@SETTINGS
@given(lines=st.lists(TEXT, max_size=8))
def test_fer2013_csv_rows_are_parsed_or_skipped(tmp_path, lines):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "\n".join(lines) + "\n2," + " ".join(["9"] * 16) + ",Training\n")
    records, report = read_fer2013_csv(path)
    assert records[-1].emotion == "fear" and records[-1].pixels.shape == (4, 4)
    assert all(r.pixels.dtype == np.uint8 for r in records)


@SETTINGS
@given(lines=st.lists(TEXT, max_size=8))
def test_ferplus_label_rows_are_parsed_or_skipped(tmp_path, lines):
    folder = tmp_path / "FER2013Train"
    folder.mkdir(exist_ok=True)
    (folder / "label.csv").write_text("\n".join(lines) + "\n")
    records, report = read_ferplus(str(tmp_path))
    assert all(r.path.startswith(str(folder.resolve())) for r in records)


@SETTINGS
@given(lines=st.lists(TEXT, max_size=8))
def test_rafdb_label_lines_are_parsed_or_skipped(tmp_path, lines):
    (tmp_path / "EmoLabel").mkdir(exist_ok=True)
    (tmp_path / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_text(text)
    records, report = read_rafdb(str(tmp_path))
    assert records == []  # no image exists, so every line is skipped and counted
    assert sum(report.skipped.values()) <= len(text.splitlines())


def test_label_files_cannot_reach_outside_the_dataset(tmp_path, image_writer):
    image_writer(tmp_path / "secret_aligned.jpg")
    image_writer(tmp_path / "secret.png")
    root = tmp_path / "raf"
    (root / "EmoLabel").mkdir(parents=True)
    (root / "Image" / "aligned").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("train_../../../secret.jpg 1\n../../../secret.jpg 1\n")
    records, _ = read_rafdb(str(root))
    assert records == []
    ferplus = tmp_path / "fp" / "FER2013Train"
    ferplus.mkdir(parents=True)
    (ferplus / "label.csv").write_text('../../secret.png,"(0, 0, 48, 48)",0,9,0,0,0,0,0,0,1,0\n'
                                       f'{tmp_path / "secret.png"},"(0, 0, 48, 48)",0,9,0,0,0,0,0,0,1,0\n')
    records, report = read_ferplus(str(tmp_path / "fp"))
    assert records == [] and report.skipped["image name outside its folder"] == 2
    with pytest.raises(DatasetError, match="outside"):
        safe_join(root, "../x.png")


def test_empty_folders_are_one_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no labelled images"):
        read_folders(str(tmp_path))


def test_models_load_in_safe_mode(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)  # arbitrary code inside a model file
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_classifier(tmp_path / "lambda.keras")
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"PK not a zip")
    with pytest.raises(ModelLoadError):
        load_classifier(broken)
