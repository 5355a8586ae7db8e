"""A distributed KerasTuner search on this machine against the same search in one process.

    python -m benchmarks.distributed                     # one process, then a chief and 2 workers
    python -m benchmarks.distributed --workers 3 --max-epochs 4

Both run ``python -m tuning.search`` with the same flags on the embedded
synthetic faces (a fresh ``--out-dir`` each); the distributed one starts a
chief and ``--workers`` workers on 127.0.0.1 (``KERASTUNER_*`` variables). It
prints the wall time, the trials completed and trials per minute. On a machine
with fewer cores than workers the workers share the cores, so expect no gain
here: a real cluster gives each worker its own machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _search(out: Path, flags: list[str], workers: int, timeout: float) -> dict:
    command = [sys.executable, "-m", "tuning.search", *flags, "--out-dir", str(out), "--project", "bench",
               "--verbose", "0"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    began = time.perf_counter()
    if workers == 0:
        procs = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)]
    else:
        base = {**env, "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(_free_port())}
        ids = ["chief"] + [f"tuner{i}" for i in range(workers)]
        procs = [subprocess.Popen(command, cwd=REPO, env={**base, "KERASTUNER_TUNER_ID": i},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in ids]
    try:
        errors = [p.communicate(timeout=timeout)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    seconds = time.perf_counter() - began
    failed = [e[-1500:] for p, e in zip(procs, errors) if p.returncode != 0]
    if failed:
        raise SystemExit(f"a search process failed:\n{failed[0]}")
    with open(out / "bench" / "trials.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "COMPLETED"]
    return {"seconds": seconds, "trials": len(rows)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="workers beside the chief. Default: %(default)s")
    p.add_argument("--max-epochs", type=int, default=3, help="Hyperband max_epochs. Default: %(default)s")
    p.add_argument("--per-class", type=int, default=60, help="synthetic faces per emotion. Default: %(default)s")
    p.add_argument("--image-size", type=int, default=32, help="Default: %(default)s")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per search. Default: %(default)s")
    args = p.parse_args(argv)
    flags = ["--max-epochs", str(args.max_epochs), "--synthetic-per-class", str(args.per_class),
             "--image-size", str(args.image_size)]
    with tempfile.TemporaryDirectory() as work:
        results = {"one process": _search(Path(work) / "one", flags, 0, args.timeout),
                   f"chief + {args.workers} workers": _search(Path(work) / "dist", flags, args.workers, args.timeout)}
    print(f"machine: {describe()}; search: {' '.join(flags)}")
    print("| search | wall s | trials completed | trials/min |")
    print("|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['seconds']:.0f} | {r['trials']} | {60 * r['trials'] / r['seconds']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
