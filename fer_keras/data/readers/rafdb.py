"""RAF-DB basic emotions, in its two common layouts.

1. The official release: ``EmoLabel/list_patition_label.txt`` (``train_00001.jpg 5``)
   with aligned faces in ``Image/aligned/train_00001_aligned.jpg``.
2. The re-packaging ``DATASET/{train,test}/{1..7}/*.jpg`` (also accepted
   without the ``DATASET`` level), with the same label ids.
Label ids: 1 surprise, 2 fear, 3 disgust, 4 happiness, 5 sadness, 6 anger, 7 neutral.
"""

from __future__ import annotations

from pathlib import Path

from fer_keras.data.readers.common import (
    DatasetError,
    class_folder_records,
    require_dir,
    safe_join,
)
from fer_keras.data.records import ReadReport, Record
from fer_keras.data.taxonomy import RAFDB_IDS


def _label_from_id(text: str) -> str | None:
    try:
        return RAFDB_IDS.get(int(text))
    except ValueError:
        return None


def read_rafdb(path: str) -> tuple[list[Record], ReadReport]:
    root = require_dir(path, "RAF-DB")
    label_file = root / "EmoLabel" / "list_patition_label.txt"
    if label_file.is_file():
        return _read_official(root, label_file)
    packaged = root / "DATASET" if (root / "DATASET").is_dir() else root
    if (packaged / "train").is_dir() and (packaged / "test").is_dir():
        report = ReadReport()
        records = []
        for split in ("train", "test"):
            records += class_folder_records(
                packaged / split, source="rafdb", split=split, report=report, label_of=_label_from_id
            )
        return records, report
    raise DatasetError(
        f"RAF-DB: {root} has neither EmoLabel/list_patition_label.txt nor DATASET/{{train,test}}/{{1..7}}/"
    )


def _read_official(root: Path, label_file: Path) -> tuple[list[Record], ReadReport]:
    report = ReadReport()
    records: list[Record] = []
    image_dir = root / "Image" / "aligned"
    if not image_dir.is_dir():
        raise DatasetError(f"RAF-DB: {image_dir} is missing (the aligned faces)")
    for line_no, line in enumerate(label_file.read_text().splitlines(), start=1):
        where = f"{label_file}:{line_no}"
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            report.skip("label line not of the form '<name> <id>'", where)
            continue
        name, label = parts
        emotion = _label_from_id(label)
        if emotion is None:
            report.skip("label id outside 1..7", where)
            continue
        split = "train" if name.startswith("train") else "test" if name.startswith("test") else None
        if split is None:
            report.skip("image name without a train/test prefix", where)
            continue
        stem = Path(name).stem
        try:
            image = safe_join(image_dir, f"{stem}_aligned{Path(name).suffix or '.jpg'}")
        except DatasetError as err:
            report.skip("image name outside its folder", f"{where}: {err}")
            continue
        if not image.is_file():
            report.skip("labelled image missing", str(image))
            continue
        records.append(Record(source="rafdb", split=split, emotion=emotion, path=str(image)))
    return records, report
