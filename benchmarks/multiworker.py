"""Multi-worker training (JAX, Keras's DataParallel) in two processes against one, on this machine.

    python -m benchmarks.multiworker                          # GiMeFive at 64 px, global batch 64
    python -m benchmarks.multiworker --width 0.25 --rounds 1 --steps 10

Both run ``KERAS_BACKEND=jax python -m fer_keras.train`` with the same flags on the embedded
synthetic faces (the same global batch, seed and steps per epoch; no augmentation), one process
with ``--strategy default``, two with ``--strategy multi-worker`` on 127.0.0.1, alternating round by
round so that the machine's load falls on both alike. Keras's per-epoch line gives the time per
step; the first epoch (compilation) is left out. Prints faces/s of the whole run and per process.
Two processes on one machine share its cores, so they cannot be faster here: the figure shows what
the gradient exchange and the sharing cost; a real cluster gives each process its own machine.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.machine import describe

REPO = Path(__file__).resolve().parents[1]
_STEP = re.compile(r"^\s*(\d+)/\d+ - (\d+)s - ([\d.]+)(us|ms|s)/step", re.MULTILINE)
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def free_port_pair() -> int:
    """A free port whose next one is free too (process 0 of a multi-worker run listens on both)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two free ports in a row")


def step_seconds(stdout: str) -> list[float]:
    """Seconds per step of each epoch, from Keras's ``--verbose 2`` lines (``20/20 - 31s - 2s/step``):
    its per-step figure, or, where that is whole seconds, the epoch's seconds over its steps (finer)."""
    return [int(epoch) / int(steps) if u == "s" else float(v) * _UNIT[u]
            for steps, epoch, v, u in _STEP.findall(stdout)]


def _run(flags: list[str], processes: int, out: Path, timeout: float) -> tuple[list[float], float]:
    base = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, "-m", "fer_keras.train", *flags, "--export-base", "", "--verbose", "2",
               "--run-dir", str(out)]
    began = time.perf_counter()
    if processes == 1:
        procs = [subprocess.Popen(command + ["--strategy", "default"], cwd=REPO, env=base, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)]
    else:
        port = free_port_pair()
        procs = [subprocess.Popen(command + ["--strategy", "multi-worker"], cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**base, "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{port}",
                                       "KERAS_DISTRIBUTION_NUM_PROCESSES": str(processes),
                                       "KERAS_DISTRIBUTION_PROCESS_ID": str(i)})
                 for i in range(processes)]
    outs = [p.communicate(timeout=timeout) for p in procs]
    wall = time.perf_counter() - began
    for p, (_, err) in zip(procs, outs):
        if p.returncode != 0:
            raise RuntimeError(f"{processes} process(es): exit {p.returncode}: {err[-2000:]}")
    return step_seconds(outs[0][0]), wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=1.0, help="GiMeFive width. Default: %(default)s")
    p.add_argument("--image-size", type=int, default=64, help="Default: %(default)s")
    p.add_argument("--batch-size", type=int, default=64, help="the global batch. Default: %(default)s")
    p.add_argument("--steps", type=int, default=20, help="steps per epoch. Default: %(default)s")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is left out). "
                   "Default: %(default)s")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds. Default: %(default)s")
    args = p.parse_args(argv)
    if args.epochs < 2 or args.rounds < 1 or args.steps < 1 or args.batch_size % 2:
        print("--epochs takes at least 2, --rounds and --steps at least 1, --batch-size an even number",
              file=sys.stderr)
        return 2
    flags = ["--width", str(args.width), "--image-size", str(args.image_size), "--synthetic-per-class", "200",
             "--batch-size", str(args.batch_size), "--steps-per-epoch", str(args.steps), "--epochs",
             str(args.epochs), "--augment", "none", "--flip-tta", "off"]
    print(describe())
    print(f"GiMeFive width {args.width}, {args.image_size} px, global batch {args.batch_size}, {args.steps} steps "
          f"per epoch, epochs 2..{args.epochs} timed, {args.rounds} round(s)")
    steps: dict[int, list[float]] = {1: [], 2: []}
    walls: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for n in (1, 2):
                per_step, wall = _run(flags, n, Path(tmp) / f"run-{r}-{n}", timeout=3600)
                steps[n] += per_step[1:]
                walls[n].append(wall)
                print(f"round {r + 1}, {n} process(es): s/step by epoch {[round(s, 3) for s in per_step]}, "
                      f"wall {wall:.0f} s", flush=True)
    print("\n| run | s/step (median) | faces/s | faces/s per process | wall s (median) |\n|---|---|---|---|---|")
    for n in (1, 2):
        s = statistics.median(steps[n])
        print(f"| {'one process' if n == 1 else 'two processes (multi-worker)'} | {s:.3f} | "
              f"{args.batch_size / s:.0f} | {args.batch_size / s / n:.0f} | {statistics.median(walls[n]):.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
