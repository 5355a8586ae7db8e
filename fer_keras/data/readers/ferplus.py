"""FER+: crowd re-labelling of FER2013 with ten annotators per image.

Layout (the FER+ project's own generation script): ``FER2013Train/``,
``FER2013Valid/``, ``FER2013Test/``, each with PNG faces and a header-less
``label.csv``: ``image,"(x, y, w, h)",`` then ten vote counts in the order of
``taxonomy.FERPLUS_VOTE_COLUMNS``.

Labels follow the FER+ "majority" rule: zero every entry with a single vote;
keep the image only if its largest entry is more than half of what remains,
and that entry is an emotion (not "unknown" or "not a face"). Every record
keeps the cleaned votes, so training can use them as soft labels.
"""

from __future__ import annotations

import csv

import numpy as np

from fer_keras.data.readers.common import DatasetError, require_dir, safe_join
from fer_keras.data.records import ReadReport, Record
from fer_keras.data.taxonomy import FERPLUS_VOTE_COLUMNS

FOLDERS = {"FER2013Train": "train", "FER2013Valid": "val", "FER2013Test": "test"}
_N_EMOTIONS = 8  # the first eight vote columns are emotions


def majority_label(votes: np.ndarray) -> tuple[str | None, np.ndarray]:
    """Applies the FER+ majority rule to one row of ten vote counts.

    Returns:
        (emotion or None when the image is rejected, the cleaned votes)
    """
    cleaned = np.where(votes == 1, 0, votes).astype(np.float64)
    total = cleaned.sum()
    if total <= 0:
        return None, cleaned
    top = int(np.argmax(cleaned))
    if cleaned[top] * 2 <= total or top >= _N_EMOTIONS:
        return None, cleaned
    return FERPLUS_VOTE_COLUMNS[top], cleaned


def read_ferplus(path: str) -> tuple[list[Record], ReadReport]:
    """Reads the three FER+ split folders under ``path``."""
    root = require_dir(path, "FER+")
    report = ReadReport()
    records: list[Record] = []
    present = [name for name in FOLDERS if (root / name).is_dir()]
    if not present:
        raise DatasetError(f"FER+: none of {', '.join(FOLDERS)} found under {root}")
    for folder_name in present:
        folder = root / folder_name
        label_file = folder / "label.csv"
        if not label_file.is_file():
            raise DatasetError(f"FER+: {label_file} is missing")
        with open(label_file, newline="") as fh:
            for line_no, row in enumerate(csv.reader(fh), start=1):
                where = f"{label_file}:{line_no}"
                if len(row) < 2 + len(FERPLUS_VOTE_COLUMNS):
                    report.skip("label.csv row with fewer than ten vote counts", where)
                    continue
                try:
                    votes = np.array([float(v) for v in row[2:2 + len(FERPLUS_VOTE_COLUMNS)]])
                except ValueError:
                    report.skip("label.csv row with a non-numeric vote", where)
                    continue
                if (votes < 0).any():
                    report.skip("label.csv row with a negative vote", where)
                    continue
                emotion, cleaned = majority_label(votes)
                if emotion is None:
                    report.skip("no FER+ majority (or unknown / not a face)", where)
                    continue
                try:
                    image = safe_join(folder, row[0].strip())
                except DatasetError as err:
                    report.skip("image name outside its folder", f"{where}: {err}")
                    continue
                records.append(Record(
                    source="ferplus", split=FOLDERS[folder_name], emotion=emotion, path=str(image),
                    votes={name: float(v) for name, v in zip(FERPLUS_VOTE_COLUMNS[:_N_EMOTIONS], cleaned) if v > 0},
                ))
    return records, report
