"""Every tracked document, record and config names paths anyone can use: relative ones, never a path of
the machine it was written on (issue: commands in README/RESULTS/BENCHMARKS must be runnable by anyone)."""

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MACHINE_PATH = re.compile(r"(^|[^A-Za-z0-9_.])/(work|root|home|tmp|opt|Users|mnt)/")
CHECKED = (".md", ".json", ".yml", ".yaml", ".toml", ".txt", ".config", ".cfg", ".sh")


def tracked_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [REPO / f for f in out.splitlines() if f.endswith(CHECKED) and not f.startswith("tests/")]


def test_no_machine_paths_in_tracked_documents():
    offenders = []
    for path in tracked_files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert offenders == []


def test_the_pattern_catches_machine_paths():
    assert MACHINE_PATH.search("python -m x --data fer2013=/work/shared/data/fer2013")
    assert MACHINE_PATH.search('"source": "/root/out/a.keras"')
    assert not MACHINE_PATH.search("python -m x --data fer2013=../shared/data/fer2013 --out runs/x")
