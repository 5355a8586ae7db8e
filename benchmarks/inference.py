"""Inference throughput: faces/s in-process and through the local gRPC server, and the serving overhead.

    python -m benchmarks.inference --model-base-path models/gimefive

For batch sizes 1, 8, 32 and 128 it times the SavedModel's serving_default
called in this process, then the same batches sent with EmotionClient to the
local server on loopback, and prints faces/s for each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import describe


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after two warm-ups."""
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base-path", default=str(Path(__file__).resolve().parents[1] / "models" / "gimefive"))
    p.add_argument("--batches", default="1,8,32,128")
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args(argv)
    import tensorflow as tf

    from clients.client import EmotionClient
    from fer_keras.loading import load_classifier
    from serving.local.embedded import start_embedded_server

    model = load_classifier(args.model_base_path)
    serve = model._serve
    server = start_embedded_server("gimefive", args.model_base_path)
    rows = []
    try:
        client = EmotionClient(server.address, "gimefive", max_batch=1024)
        for batch in (int(b) for b in args.batches.split(",")):
            shape = (batch, client.face_size, client.face_size, 1)
            faces = np.random.default_rng(batch).integers(0, 256, shape).astype(np.uint8)
            local = timed(lambda x=faces: serve(face=tf.constant(x))["probabilities"].numpy(), args.repeats)
            remote = timed(lambda x=faces: client.predict(x), args.repeats)
            rows.append((batch, batch / local, batch / remote, remote / local))
    finally:
        server.stop(grace=1.0)
    print(f"machine: {describe()}")
    print("| batch | in-process faces/s | gRPC faces/s | gRPC time / in-process time |")
    print("|---|---|---|---|")
    for batch, local, remote, ratio in rows:
        print(f"| {batch} | {local:.1f} | {remote:.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
