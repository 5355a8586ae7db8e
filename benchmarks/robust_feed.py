"""The ``robust`` augmentation feed: the per-face reference against the batch-vectorised feed, side by side.

Both run on the same faces in one process, the way training feeds them, for
``--seconds`` each, alternating old and new for ``--rounds`` rounds:

* old: :func:`fer_keras.data.shifts.robust_augment_per_face` on each batch of
  ``--batch`` faces, batches spread over ``--threads`` threads (Keras'
  PyDataset workers calling it per batch);
* new: :class:`fer_keras.data.batches.FaceBatches` with the robust
  augmentation, epoch after epoch, on ``--threads`` threads (the vectorised
  :func:`fer_keras.data.robust.robust_augment` on chunks of whole batches).

Printed per round: faces/s in all and per thread (with one thread per core,
per core). Needs only NumPy, OpenCV and Keras, so it runs on a lent
accelerator machine too.

    python -m benchmarks.robust_feed                       # threads = CPU count
    python -m benchmarks.robust_feed --threads 1,2 --rounds 2
    python -m benchmarks.robust_feed --pack .gpu/fer2013-six.npz --threads 16   # on a lent machine
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FER2013 = REPO.parent / "shared" / "data" / "fer2013"


def load_faces(root: Path, count: int, size: int, pack: str = "") -> tuple[np.ndarray, str]:
    """``count`` training faces (every k-th): from a ``fer_keras.portable`` pack, from FER2013, or synthetic
    faces without either."""
    import cv2

    if pack:
        from fer_keras.portable import load_packed

        packed = load_packed(pack)
        train = packed["images"][packed["split"] == 0]
        picked = train[:: max(1, len(train) // count)][:count]
        return picked.astype(np.float32), f"{len(picked)} training faces of {pack}"

    files = sorted(root.glob("train/*/*.jpg"))
    if files:
        picked = files[:: max(1, len(files) // count)][:count]
        faces = np.stack([cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (size, size)) for f in picked])
        return faces[..., None].astype(np.float32), f"{len(picked)} FER2013 training faces"
    from fer_keras.data.synthetic import synthetic_records
    from fer_keras.data.taxonomy import SIX

    records = synthetic_records(count // len(SIX.classes) + 1, SIX, size, 0)[:count]
    faces = np.stack([r.pixels if r.pixels.ndim == 2 else r.pixels[..., 0] for r in records])
    return faces[..., None].astype(np.float32), f"{count} synthetic faces (no FER2013 at {root})"


def old_feed(faces: np.ndarray, batch: int, threads: int, seconds: float) -> float:
    from fer_keras.data.shifts import robust_augment_per_face as augment

    batches = [faces[i:i + batch] for i in range(0, len(faces) - batch + 1, batch)]
    done, start, round_ = 0, time.perf_counter(), 0
    with ThreadPoolExecutor(threads) as pool:
        while time.perf_counter() - start < seconds:
            seeds = range(round_ * len(batches), (round_ + 1) * len(batches))
            done += sum(len(out) for out in pool.map(
                lambda args: augment(args[0], np.random.default_rng(args[1])), zip(batches, seeds)))
            round_ += 1
    return done / (time.perf_counter() - start)


def new_feed(faces: np.ndarray, batch: int, threads: int, seconds: float) -> float:
    from fer_keras.data.batches import FaceBatches

    feed = FaceBatches(faces, np.zeros((len(faces), 1), np.float32), batch, robust=1.0, workers=threads)
    done, start = 0, time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            for i in range(len(feed)):
                done += len(feed[i][0])
            feed.on_epoch_end()
    finally:
        feed.close()
    return done / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.machine import describe

    p = argparse.ArgumentParser(prog="python -m benchmarks.robust_feed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_FER2013, help="FER2013 folder (synthetic faces without)")
    p.add_argument("--pack", default="", help="take the faces from this fer_keras.portable pack instead")
    p.add_argument("--faces", type=int, default=2048)
    p.add_argument("--size", type=int, default=48, help="face side in pixels. Default: %(default)s")
    p.add_argument("--batch", type=int, default=64, help="faces per batch. Default: %(default)s")
    p.add_argument("--threads", default="", help="comma-separated thread counts (default: the CPU count)")
    p.add_argument("--seconds", type=float, default=5.0, help="per measurement. Default: %(default)s")
    p.add_argument("--rounds", type=int, default=2, help="old/new alternations. Default: %(default)s")
    args = p.parse_args(argv)
    if args.batch < 1 or args.faces < args.batch:
        print(f"error: --batch must be at least 1 and --faces ({args.faces}) at least --batch ({args.batch})",
              file=sys.stderr)
        return 2
    if args.size < 16:
        print(f"error: --size must be at least 16 pixels; got {args.size}", file=sys.stderr)
        return 2
    try:
        threads = [int(t) for t in args.threads.split(",")] if args.threads else [os.cpu_count() or 1]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        print(f"error: --threads takes comma-separated whole numbers of at least 1; got {args.threads!r}",
              file=sys.stderr)
        return 2
    from fer_keras.portable import PortableError

    try:
        faces, what = load_faces(args.data, args.faces, args.size, args.pack)
    except PortableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"machine: {describe()}")
    print(f"{what}, {faces.shape[1]} px, batches of {args.batch}, {args.seconds:g} s per measurement")
    print("| round | threads | old feed: faces/s (per thread) | new feed: faces/s (per thread) | ratio |")
    print("|---|---|---|---|---|")
    for round_ in range(1, args.rounds + 1):
        for n in threads:
            old = old_feed(faces, args.batch, n, args.seconds)
            new = new_feed(faces, args.batch, n, args.seconds)
            print(f"| {round_} | {n} | {old:,.0f} ({old / n:,.0f}) | {new:,.0f} ({new / n:,.0f}) | "
                  f"{new / old:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
