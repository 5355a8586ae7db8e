"""FER2013: the Kaggle class-folder layout and the original ``emotion,pixels,Usage`` CSV.

Kaggle layout: ``train/<class>/Training_*.jpg`` and
``test/<class>/{PublicTest,PrivateTest}_*.jpg``.

Protocols (``protocol``):
  - ``whole-test`` (default, the GiMeFive paper's reporting): test is the whole
    test folder (PublicTest + PrivateTest); validation is carved from Training.
  - ``standard``: Training / PublicTest as validation / PrivateTest as test.
Every test record keeps its origin in ``subset`` so PrivateTest can be
reported alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_keras.data.readers.common import (
    DatasetError,
    class_folder_records,
    require_dir,
)
from fer_keras.data.records import ReadReport, Record
from fer_keras.data.taxonomy import FER2013_IDS

PROTOCOLS = ("whole-test", "standard")
_USAGE = {"Training": "train", "PublicTest": "test", "PrivateTest": "test"}


def _split_for(usage: str, protocol: str) -> str:
    if protocol == "standard" and usage == "PublicTest":
        return "val"
    return _USAGE[usage]


def read_fer2013(path: str, protocol: str = "whole-test") -> tuple[list[Record], ReadReport]:
    """Reads FER2013 from its Kaggle folders or from ``fer2013.csv``."""
    if protocol not in PROTOCOLS:
        raise DatasetError(f"unknown FER2013 protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")
    p = Path(path)
    if p.is_file():
        return read_fer2013_csv(p, protocol)
    root = require_dir(p, "FER2013")
    report = ReadReport()
    records: list[Record] = []
    for folder_name in ("train", "test"):
        folder = root / folder_name
        if not folder.is_dir():
            raise DatasetError(
                f"FER2013: expected {folder} (Kaggle layout: train/<class>/, test/<class>/) or a fer2013.csv file"
            )
        records += class_folder_records(
            folder, source="fer2013", split="train", report=report,
            subset_of=lambda f: f.name.split("_", 1)[0],
        )
    kept = []
    for r in records:
        if r.subset not in _USAGE:
            report.skip("file name without a Training/PublicTest/PrivateTest prefix", r.path or "")
            continue
        r.split = _split_for(r.subset, protocol)
        kept.append(r)
    return kept, report


def _parse_pixels(text: str) -> np.ndarray | None:
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        return None
    side = int(round(np.sqrt(values.size)))
    if values.size == 0 or side * side != values.size or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(side, side)


def read_fer2013_csv(path: Path, protocol: str = "whole-test") -> tuple[list[Record], ReadReport]:
    """Reads the original CSV: ``emotion,pixels,Usage`` rows, with or without a header.

    A header is recognised by its first field not being a number, so a file
    without one keeps its first image (the paper's loader lost it). Malformed
    rows are skipped and counted. Lines are split one by one (the format has
    no quoting), so a stray quote cannot swallow the rows after it.
    """
    report = ReadReport()
    records: list[Record] = []
    with open(path, newline="", errors="replace") as fh:
        for line_no, line in enumerate(fh, start=1):
            row = [field.strip().strip('"') for field in line.rstrip("\r\n").split(",")]
            if line_no == 1 and row and not row[0].strip().lstrip("-").isdigit():
                continue  # header
            if len(row) < 3:
                report.skip("CSV row without emotion,pixels,Usage", f"{path}:{line_no}")
                continue
            try:
                emotion = FER2013_IDS[int(row[0])]
            except (ValueError, KeyError):
                report.skip("CSV row with an unknown emotion id", f"{path}:{line_no}")
                continue
            usage = row[2].strip()
            if usage not in _USAGE:
                report.skip("CSV row with an unknown Usage", f"{path}:{line_no}")
                continue
            pixels = _parse_pixels(row[1])
            if pixels is None:
                report.skip("CSV row whose pixels are not a square of 0-255 values", f"{path}:{line_no}")
                continue
            records.append(Record(
                source="fer2013", split=_split_for(usage, protocol), emotion=emotion,
                pixels=pixels, subset=usage, ref=f"{path}:{line_no}",
            ))
    if not records:
        raise DatasetError(f"FER2013 CSV {path}: no usable rows")
    return records, report
