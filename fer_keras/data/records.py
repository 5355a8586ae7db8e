"""What every reader returns: one :class:`Record` per face, before decoding."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

SPLITS = ("train", "val", "test")


@dataclass
class Record:
    """One labelled face as a reader found it.

    Attributes:
        source: dataset name ("fer2013", "rafdb", ...).
        split: "train", "val" or "test"; "" when the dataset has no split and
            one is assigned later.
        emotion: canonical emotion name (see ``taxonomy.EMOTIONS``).
        path: image file, or None when ``pixels`` holds the image.
        pixels: an in-memory uint8 image (CSV and synthetic sources).
        subset: finer provenance inside a split (FER2013's "PublicTest").
        group: an identity that must not cross splits (a CK+ subject).
        votes: annotator votes per canonical emotion (FER+), for soft labels.
        ref: a reference for in-memory faces (CSV file and line).
    """

    source: str
    split: str
    emotion: str
    path: str | None = None
    pixels: np.ndarray | None = None
    subset: str = ""
    group: str = ""
    votes: dict[str, float] | None = None
    ref: str = ""

    @property
    def name(self) -> str:
        """Where the face came from, for reports: its path, or e.g. ``fer2013.csv:1234``."""
        return self.path if self.path is not None else (self.ref or f"{self.source}:{self.split}")


@dataclass
class ReadReport:
    """What a reader skipped while reading labels, counted by reason."""

    skipped: Counter = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, example: str = "") -> None:
        self.skipped[reason] += 1
        self.examples.setdefault(reason, example)
