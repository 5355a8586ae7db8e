"""Resident memory of the local server over many version swaps: does an unloaded version's memory come back?

Starts ``python -m serving.local`` on version 1 of the shipped six-class model (exported once with every
explanation signature, as the video client's server has it), then ``--swaps`` times copies the next
version into the base path as a deployment would (a copy under a hidden name, renamed into place), waits
until the server has unloaded the version before it, asks the new one for 5 batches of 16 faces and one
explanation of 4, deletes the old version's folder and reads the server's resident memory (VmRSS)::

    python -m benchmarks.version_swaps --swaps 12

Prints one line per version (its number, resident MB) and the growth per swap fitted over the second
half of the swaps: a leak of one version's memory per swap shows as a slope near a version's size; a
bounded cost as a slope near zero.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.service_burst import rss_mb
from benchmarks.soak import ServerProcess, free_port, model_status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.version_swaps", description=__doc__.split("\n\n")[0])
    p.add_argument("--swaps", type=int, default=12, help="versions swapped to after version 1")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a swap may take")
    args = p.parse_args(argv)
    if args.swaps < 2:
        p.error(f"--swaps must be at least 2 (a fit needs two); got {args.swaps}")

    from clients.client import EmotionClient
    from fer_keras import pretrained
    from fer_keras.data.taxonomy import SIX
    from fer_keras.exporting import export_saved_model

    with tempfile.TemporaryDirectory() as tmp:
        base, template = Path(tmp) / "models" / "gimefive", Path(tmp) / "template"
        export_saved_model(pretrained.load("gimefive-fer2013"), str(template), "gimefive", SIX.classes, version=1)
        shutil.copytree(template / "gimefive" / "1", base / "1")
        port = free_port()
        server = ServerProcess(base, port, sample_s=3600)
        server.start()
        address = f"127.0.0.1:{port}"
        faces = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 1)).astype(np.uint8)
        memory = []
        try:
            with EmotionClient(address, "gimefive", connect_timeout=120) as client:
                for version in range(1, args.swaps + 2):
                    if version > 1:
                        staged = base / f".{version}"
                        shutil.copytree(template / "gimefive" / "1", staged)
                        os.rename(staged, base / str(version))
                        deadline = time.monotonic() + args.timeout
                        while f"version {version - 1} END" not in model_status(address):
                            if time.monotonic() > deadline:
                                raise SystemExit(f"error: version {version - 1} still served {args.timeout:.0f} s "
                                                 f"after version {version} was copied: {model_status(address)}")
                            time.sleep(0.2)
                        shutil.rmtree(base / str(version - 1))
                    for _ in range(5):
                        client.predict(faces)
                    client.explain(faces[:4], "gradact-fused")
                    memory.append(rss_mb(server.proc.pid))
                    print(f"version {version}: {memory[-1]:,.0f} MB", flush=True)
        finally:
            server.stop()
    half = memory[len(memory) // 2:]
    slope = np.polyfit(np.arange(len(half)), half, 1)[0]
    print(f"resident memory: version 1 {memory[0]:,.0f} MB, range after the first swap {min(memory[1:]):,.0f}-"
          f"{max(memory[1:]):,.0f} MB, last {memory[-1]:,.0f} MB; growth per swap over the second half "
          f"{slope:+.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
