"""Integrity report: what is wrong with the data, reported rather than hidden.

Unreadable files (skipped while decoding), nearly blank faces, exact
duplicates (same decoded pixels), duplicates that carry conflicting labels,
and test or validation faces that also appear in the training split
(leakage: FER2013 has hundreds).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from fer_keras.data.faces import FaceSet


@dataclass
class IntegrityReport:
    unreadable: dict[str, list[str]] = field(default_factory=dict)  # source -> names
    dropped_labels: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> emotion -> count
    reader_skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> reason -> count
    blank: list[str] = field(default_factory=list)
    duplicate_groups: int = 0
    duplicate_images: int = 0
    conflicting_groups: int = 0
    leaked: dict[str, int] = field(default_factory=dict)  # val: also in train; test: also in train or val

    def to_dict(self) -> dict:
        return {
            "unreadable": {s: {"count": len(v), "examples": v[:20]} for s, v in self.unreadable.items()},
            "dropped_labels": self.dropped_labels,
            "reader_skipped": self.reader_skipped,
            "nearly_blank": {"count": len(self.blank), "examples": self.blank[:20]},
            "duplicate_groups": self.duplicate_groups,
            "duplicate_images": self.duplicate_images,
            "conflicting_label_groups": self.conflicting_groups,
            "leaked_from_training_data": self.leaked,
        }

    def summary(self) -> str:
        unreadable = sum(len(v) for v in self.unreadable.values())
        dropped = sum(sum(v.values()) for v in self.dropped_labels.values())
        skipped = sum(sum(v.values()) for v in self.reader_skipped.values())
        leaks = ", ".join(f"{n} {split} faces" for split, n in self.leaked.items()) or "none"
        return (
            f"integrity: {unreadable} unreadable skipped, {skipped} label entries skipped by readers, "
            f"{dropped} outside the class view dropped, {len(self.blank)} nearly blank, "
            f"{self.duplicate_groups} duplicate groups ({self.duplicate_images} images, "
            f"{self.conflicting_groups} with conflicting labels), leaked from training data: {leaks}"
        )


def leaked_mask(faces: FaceSet, *others: FaceSet) -> np.ndarray:
    """True for each face of ``faces`` whose pixels also appear in any of ``others``."""
    seen = set().union(*(o.digests.tolist() for o in others))
    return np.array([d in seen for d in faces.digests], dtype=bool)


def check_integrity(splits: dict[str, FaceSet], report: IntegrityReport | None = None) -> IntegrityReport:
    """Fills ``report`` with the blank, duplicate and leakage findings of ``splits``."""
    report = report or IntegrityReport()
    labels_by_digest: dict[str, set[int]] = defaultdict(set)
    counts: Counter = Counter()
    for faces in splits.values():
        report.blank += faces.names[faces.blank].tolist()
        for digest, label in zip(faces.digests, faces.labels):
            counts[digest] += 1
            labels_by_digest[digest].add(int(label))
    groups = [d for d, n in counts.items() if n > 1]
    report.duplicate_groups = len(groups)
    report.duplicate_images = sum(counts[d] for d in groups)
    report.conflicting_groups = sum(1 for d in groups if len(labels_by_digest[d]) > 1)
    if "val" in splits:
        report.leaked["val"] = int(leaked_mask(splits["val"], splits["train"]).sum())
    if "test" in splits:
        seen = [splits[s] for s in ("train", "val") if s in splits]
        report.leaked["test"] = int(leaked_mask(splits["test"], *seen).sum())
    return report
