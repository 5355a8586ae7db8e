"""Class-per-folder datasets: AffectNet re-packagings, CK+48, and any user's own.

Each reads ``ROOT/<split>/<class>/<image>`` (split folders named train, val,
test and their usual spellings) or, with no split folders, ``ROOT/<class>/<image>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fer_keras.data.readers.common import (
    DatasetError,
    class_folder_records,
    require_dir,
    split_folders,
)
from fer_keras.data.records import ReadReport, Record
from fer_keras.data.taxonomy import AFFECTNET_IDS, EMOTIONS, canonical_emotion


def _read_tree(
    root: Path, source: str, label_of, *, val_is_test: bool = False, group_of=None
) -> tuple[list[Record], ReadReport]:
    report = ReadReport()
    splits = split_folders(root)
    if not splits:
        splits = {"": root}  # no split folders: assigned later
    records: list[Record] = []
    for split, folder in splits.items():
        if val_is_test and split == "val" and "test" not in splits:
            split = "test"
        records += class_folder_records(
            folder, source=source, split=split, report=report, label_of=label_of, group_of=group_of
        )
    if not records:
        raise DatasetError(f"{source}: no labelled images found under {root} (expected <class>/<image> folders)")
    return records, report


def read_affectnet(path: str) -> tuple[list[Record], ReadReport]:
    """AffectNet re-packagings with class-name (``happy``) or numeric (``1``) folders.

    AffectNet's test set is not public, so its official validation set is the
    test set people report on: a ``val`` folder becomes ``test`` unless a
    ``test`` folder exists too.
    """

    def label_of(name: str) -> str | None:
        if name.isdigit():
            return AFFECTNET_IDS.get(int(name))
        return canonical_emotion(name)

    return _read_tree(require_dir(path, "AffectNet"), "affectnet", label_of, val_is_test=True)


def ckplus_subject(path: Path) -> str:
    """CK+ subject id from a file name such as ``S010_004_00000017.png``."""
    return path.name.split("_", 1)[0]


def read_ckplus(path: str) -> tuple[list[Record], ReadReport]:
    """CK+48 (``anger/S010_004_00000017.png``): no split, so each record carries
    its subject as ``group`` and splits are later drawn by subject."""
    return _read_tree(require_dir(path, "CK+"), "ckplus", canonical_emotion, group_of=ckplus_subject)


def read_folders(
    path: str, label_map: Mapping[str, str] | None = None, source: str = "folders"
) -> tuple[list[Record], ReadReport]:
    """Any class-per-folder dataset.

    Args:
        path: dataset root.
        label_map: folder name -> canonical emotion; folder names not in it are
            tried as usual spellings ("happy", "Angry"), then skipped and counted.
        source: name used in reports.
    """
    mapping = {k.lower(): v for k, v in (label_map or {}).items()}
    for folder, emotion in mapping.items():
        if emotion not in EMOTIONS:
            raise DatasetError(f"label map: {folder!r} -> {emotion!r} is not one of {', '.join(EMOTIONS)}")

    def label_of(name: str) -> str | None:
        return mapping.get(name.lower()) or canonical_emotion(name)

    return _read_tree(require_dir(path, source), source, label_of)
