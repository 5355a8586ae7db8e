"""The machine a benchmark ran on: CPU model, cores, library versions."""

from __future__ import annotations

import os
import platform
from importlib import metadata


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe() -> str:
    versions = []
    for package in ("tensorflow", "keras", "grpcio", "mtcnn", "opencv-python-headless", "numpy"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; " + ", ".join(versions)
