"""What each served explanation costs per face, beside Grad-CAM, in one run.

    python -m benchmarks.explain_cost                       # the shipped default model
    python -m benchmarks.explain_cost --pretrained gimefive-ferplus --batches 1,4,16

Exports the model (as ``python -m fer_keras.export`` does) into a temporary folder, loads the
SavedModel, and times every explanation signature on the same FER-sized faces at each batch size,
the methods interleaved round by round so that the machine's load falls on all of them alike. The
video client asks the server for the heatmaps of the faces whose heatmap is due (every
``--explain-every`` frames per face), a few faces per request: batch sizes 1-16 are the ones it sends.
Prints milliseconds per face (median of the rounds) and the ratio to Grad-CAM.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np

from benchmarks.machine import describe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained", default="gimefive-fer2013", help="a shipped model name. Default: %(default)s")
    p.add_argument("--batches", default="1,4,16", help="faces per request, comma list. Default: %(default)s")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds per method and batch. Default: %(default)s")
    args = p.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        print(f"--batches takes whole numbers; got {args.batches!r}", file=sys.stderr)
        return 2
    if not batches or min(batches) < 1 or args.rounds < 1:
        print("--batches takes sizes of at least 1 and --rounds at least 1", file=sys.stderr)
        return 2

    import tensorflow as tf

    from fer_keras import pretrained
    from fer_keras.explain.methods import CAM_METHODS, SERVED_METHODS
    from fer_keras.exporting import export_saved_model

    if args.pretrained not in pretrained.available():
        print(f"unknown shipped model {args.pretrained!r}; shipped: {', '.join(pretrained.available())}",
              file=sys.stderr)
        return 2
    model = pretrained.load(args.pretrained)
    size = model.input_shape[1]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_saved_model(model, tmp, "bench", pretrained.info(args.pretrained)["classes"])
        signatures = tf.saved_model.load(str(path)).signatures
        faces = np.random.default_rng(0).integers(0, 256, (max(batches), size, size, 1), dtype=np.uint8)
        print(f"machine: {describe()}")
        print(f"model: {args.pretrained}; {args.rounds} rounds per method and batch, methods interleaved")
        print(f"{'method':<18}" + "".join(f"{f'ms/face @{b}':>14}{'x gradcam':>11}" for b in batches))
        results: dict[str, dict[int, float]] = {m: {} for m in SERVED_METHODS}
        for b in batches:
            x = tf.constant(faces[:b])
            fns = {m: signatures[CAM_METHODS[m].signature] for m in SERVED_METHODS}
            for fn in fns.values():  # warm-up: tracing and first calls
                fn(face=x)
                fn(face=x)
            times: dict[str, list[float]] = {m: [] for m in fns}
            for _ in range(args.rounds):
                for m, fn in fns.items():
                    start = time.perf_counter()
                    fn(face=x)["heatmap"].numpy()
                    times[m].append(time.perf_counter() - start)
            for m in fns:
                results[m][b] = 1000 * statistics.median(times[m]) / b
        for m in SERVED_METHODS:
            print(f"{m:<18}" + "".join(f"{results[m][b]:14.2f}{results[m][b] / results['gradcam'][b]:11.2f}"
                                       for b in batches))
    return 0


if __name__ == "__main__":
    sys.exit(main())
