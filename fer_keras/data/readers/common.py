"""Helpers shared by the dataset readers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from fer_keras.data.records import ReadReport, Record
from fer_keras.data.taxonomy import canonical_emotion

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

# Folder names people give their splits, and the split each stands for.
SPLIT_FOLDERS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}


class DatasetError(ValueError):
    """A dataset is missing or not in the layout its reader expects."""


def require_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise DatasetError(f"{what}: {p} is not a directory")
    return p


def safe_join(root: Path, name: str) -> Path:
    """``root / name``, refusing names that would leave ``root`` (``../x``, absolute paths)."""
    candidate = (root / name).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise DatasetError(f"{name!r} points outside the dataset folder {root}")
    return candidate


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def class_folder_records(
    folder: Path,
    *,
    source: str,
    split: str,
    report: ReadReport,
    label_of: Callable[[str], str | None] = canonical_emotion,
    group_of: Callable[[Path], str] | None = None,
    subset_of: Callable[[Path], str] | None = None,
) -> list[Record]:
    """Records for ``folder/<class>/<image>``, the class named by its folder.

    Folders whose name ``label_of`` does not know are skipped and counted;
    so are files that are not images.
    """
    records: list[Record] = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        emotion = label_of(class_dir.name)
        files = sorted(class_dir.iterdir())
        if emotion is None:
            report.skip(f"unknown class folder '{class_dir.name}'", str(class_dir))
            continue
        for f in files:
            if not is_image(f):
                report.skip("not an image file", str(f))
                continue
            records.append(Record(
                source=source, split=split, emotion=emotion, path=str(f),
                group=group_of(f) if group_of else "",
                subset=subset_of(f) if subset_of else "",
            ))
    return records


def split_folders(root: Path) -> dict[str, Path]:
    """``{"train": root/train, ...}`` for the split-named subfolders of ``root``."""
    found: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        split = SPLIT_FOLDERS.get(child.name.lower()) if child.is_dir() else None
        if split and split not in found:
            found[split] = child
    return found
