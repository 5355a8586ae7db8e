"""Dataset sources named on the command line, read, split and aggregated.

A source is ``NAME=PATH`` (``fer2013=../shared/data/fer2013``); ``synthetic``
needs no path. Several sources are aggregated split by split: their training
parts form one training set, their test parts one test set. A source without
a validation split gets one carved from its training data (seeded,
stratified by class, and by group where faces carry one, like CK+ subjects);
a source with no split at all gets its test split drawn the same way.
"""

from __future__ import annotations

import csv
import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_keras.data.faces import FaceSet, load_faces
from fer_keras.data.integrity import IntegrityReport, check_integrity
from fer_keras.data.readers.common import DatasetError
from fer_keras.data.readers.fer2013 import read_fer2013
from fer_keras.data.readers.ferplus import read_ferplus
from fer_keras.data.readers.folders import read_affectnet, read_ckplus, read_folders
from fer_keras.data.readers.rafdb import read_rafdb
from fer_keras.data.records import SPLITS, ReadReport, Record
from fer_keras.data.synthetic import synthetic_records
from fer_keras.data.taxonomy import Taxonomy, get_taxonomy

READERS: dict[str, Callable[..., tuple[list[Record], ReadReport]]] = {
    "fer2013": read_fer2013,
    "ferplus": read_ferplus,
    "rafdb": read_rafdb,
    "affectnet": read_affectnet,
    "ckplus": read_ckplus,
    "tfeid": functools.partial(read_folders, source="tfeid"),
    "folders": read_folders,
}
SOURCE_NAMES = tuple(READERS) + ("synthetic",)



@dataclass(frozen=True)
class DataConfig:
    """Which data to read and how to split it.

    Attributes:
        sources: ``NAME=PATH`` specs (NAME one of ``SOURCE_NAMES``); empty means synthetic.
        classes: class view, "six" (GiMeFive) or "seven" (with neutral).
        image_size: faces are resized to this side.
        val_fraction: share of training data carved out for validation where a source has none.
        test_fraction: share held out for testing where a source has no split at all.
        fer2013_protocol: "whole-test" (paper) or "standard" (PublicTest validates, PrivateTest tests).
        label_map: (folder name, emotion) pairs for the ``folders`` reader.
        synthetic_per_class: synthetic faces per emotion.
        seed: seed of every split drawn here.
    """

    sources: tuple[str, ...] = ()
    classes: str = "six"
    image_size: int = 64
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    fer2013_protocol: str = "whole-test"
    label_map: tuple[tuple[str, str], ...] = ()
    synthetic_per_class: int = 200
    seed: int = 0

    def __post_init__(self):
        if self.image_size < 16:
            raise DatasetError(f"image_size must be at least 16 pixels; got {self.image_size}")
        for name in ("val_fraction", "test_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise DatasetError(f"{name} must be between 0 and 1; got {getattr(self, name)}")
        if self.synthetic_per_class < 1:
            raise DatasetError(f"synthetic_per_class must be at least 1; got {self.synthetic_per_class}")


def parse_source(spec: str) -> tuple[str, str]:
    """``"fer2013=/data/fer"`` -> ``("fer2013", "/data/fer")``; ``"synthetic"`` -> ``("synthetic", "")``."""
    name, _, path = spec.partition("=")
    name = name.strip().lower()
    if name not in SOURCE_NAMES:
        raise DatasetError(f"unknown data source {name!r} in {spec!r}; choose one of: {', '.join(SOURCE_NAMES)}")
    if name != "synthetic" and not path:
        raise DatasetError(f"data source {spec!r} needs a path: {name}=PATH")
    return name, path


def read_source(spec: str, config: DataConfig) -> tuple[list[Record], ReadReport]:
    name, path = parse_source(spec)
    taxonomy = get_taxonomy(config.classes)
    if name == "synthetic":
        per_class = int(path) if path else config.synthetic_per_class
        return synthetic_records(per_class, taxonomy, config.image_size, config.seed), ReadReport()
    if not Path(path).exists():
        raise DatasetError(f"data source {name}: {path} does not exist")
    if name == "fer2013":
        return read_fer2013(path, protocol=config.fer2013_protocol)
    if name == "folders":
        return read_folders(path, label_map=dict(config.label_map))
    return READERS[name](path)


def _draw(records: list[Record], fraction: float, rng: np.random.Generator) -> set[int]:
    """Indices of about ``fraction`` of ``records``: whole groups where records
    carry one, else stratified by emotion."""
    if fraction <= 0 or not records:
        return set()
    if any(r.group for r in records):
        groups = sorted({r.group for r in records})
        rng.shuffle(groups)
        chosen = set(groups[: max(1, int(round(fraction * len(groups))))])
        return {i for i, r in enumerate(records) if r.group in chosen}
    by_emotion: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_emotion[r.emotion].append(i)
    picked: set[int] = set()
    for emotion in sorted(by_emotion):
        idx = np.array(by_emotion[emotion])
        rng.shuffle(idx)
        picked.update(idx[: int(round(fraction * len(idx)))].tolist())
    return picked


def assign_splits(records: list[Record], config: DataConfig) -> list[Record]:
    """Gives every record of one source a split (see the module docstring)."""
    rng = np.random.default_rng(config.seed)
    unsplit = [r for r in records if not r.split]
    for i in _draw(unsplit, config.test_fraction, rng):
        unsplit[i].split = "test"
    for r in unsplit:
        if not r.split:
            r.split = "train"
    if not any(r.split == "val" for r in records):
        train = [r for r in records if r.split == "train"]
        for i in _draw(train, config.val_fraction, rng):
            train[i].split = "val"
    return records


@dataclass
class LoadedData:
    """Decoded splits of the aggregated sources, with their integrity report and counts table."""

    taxonomy: Taxonomy
    splits: dict[str, FaceSet]
    integrity: IntegrityReport
    table: list[dict] = field(default_factory=list)  # rows: source, split, class counts, total

    def table_text(self) -> str:
        classes = list(self.taxonomy.classes)
        header = ["source", "split", *classes, "total"]
        lines = [" ".join(f"{h:>10}" for h in header)]
        for row in self.table:
            lines.append(" ".join(f"{str(row[h]):>10}" for h in header))
        return "\n".join(lines)

    def all_faces(self) -> FaceSet:
        """Every face of every split, as one set (a cross-dataset test uses a source in full)."""
        return FaceSet.concatenate([self.splits[s] for s in SPLITS if s in self.splits])

    def save_table(self, path: Path) -> None:
        header = ["source", "split", *self.taxonomy.classes, "total"]
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(self.table)


def load_data(config: DataConfig, *, progress: bool = True, require_train: bool = True) -> LoadedData:
    """Reads, splits, decodes and checks every source of ``config``.

    Args:
        config: the sources and how to split them.
        progress: show decoding progress bars.
        require_train: a source with no training faces is an error (training
            needs them; evaluating a source in full does not).

    Raises:
        DatasetError: a source is missing, malformed, or yields no (training) faces.
    """
    taxonomy = get_taxonomy(config.classes)
    integrity = IntegrityReport()
    parts: dict[str, list[FaceSet]] = defaultdict(list)
    table = []
    for spec in config.sources or ("synthetic",):
        name, _ = parse_source(spec)
        records, read_report = read_source(spec, config)
        if read_report.skipped:
            integrity.reader_skipped[name] = dict(read_report.skipped)
        assign_splits(records, config)
        for split in SPLITS:
            chosen = [r for r in records if r.split == split]
            if not chosen:
                continue
            faces, dropped, unreadable = load_faces(chosen, taxonomy, config.image_size, progress=progress,
                                                    desc=f"{name}/{split}")
            for emotion, n in dropped.items():
                integrity.dropped_labels.setdefault(name, {})
                integrity.dropped_labels[name][emotion] = integrity.dropped_labels[name].get(emotion, 0) + n
            if unreadable:
                integrity.unreadable.setdefault(name, []).extend(unreadable)
            if len(faces):
                parts[split].append(faces)
                table.append({"source": name, "split": split, **faces.class_counts(), "total": len(faces)})
    splits = {s: FaceSet.concatenate(parts[s]) for s in SPLITS if parts[s]}
    if not splits:
        raise DatasetError(
            f"no faces in {', '.join(config.sources) or 'synthetic'} for the {config.classes}-class view"
        )
    if require_train and "train" not in splits:
        raise DatasetError(
            f"no training faces in {', '.join(config.sources) or 'synthetic'} for the {config.classes}-class view"
        )
    for split in SPLITS:
        if split in splits:
            counts = splits[split].class_counts()
            table.append({"source": "all", "split": split, **counts, "total": len(splits[split])})
    check_integrity(splits, integrity)
    return LoadedData(taxonomy, splits, integrity, table)
