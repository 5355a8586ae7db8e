"""Size and time per face of LiteRT files beside the Keras model they came from, in one run.

    python -m fer_keras.export gimefive-fer2013 --format litert --quantize int8 --data fer2013=... --out edge/a.tflite
    python -m benchmarks.edge --keras gimefive-fer2013 edge/fer2013-none.tflite edge/fer2013-fp16.tflite edge/a.tflite

Each model answers the same random uint8 faces, at batch 1 and batch 16, interleaved over ``--rounds``
rounds (2 threads each); prints milliseconds per face (the median round) and the file size. The Keras
row runs the model as ``evaluate`` does (``model.predict``, float32, flip averaging where the shipped
model has it, as the LiteRT files carry it inside).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _runner(model):
    return lambda faces, batch: model.predict(faces, batch_size=batch)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.edge", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help=".tflite files written by fer_keras.export --format litert")
    p.add_argument("--keras", default=None, help="also time this .keras model or shipped name")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--faces", type=int, default=64, help="faces per measurement")
    args = p.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    from fer_keras import pretrained
    from fer_keras.evaluation import predict_probabilities
    from fer_keras.loading import LiteRTClassifier, load_classifier

    models = {f: LiteRTClassifier(f) for f in args.files}
    runners = {f: _runner(m) for f, m in models.items()}
    sizes = {f: os.path.getsize(f) / 1e6 for f in args.files}
    if args.keras:
        model = load_classifier(args.keras)
        tta = args.keras in pretrained.available() and bool(pretrained.info(args.keras).get("flip_tta", False))
        runners[f"keras {args.keras}"] = lambda x, b: predict_probabilities(model, x, batch_size=b, flip_tta=tta)
        sizes[f"keras {args.keras}"] = None
    size = next(iter(models.values())).input_shape[1]
    faces = np.random.default_rng(0).integers(0, 256, (args.faces, size, size, 1), dtype=np.uint8)
    timings: dict[tuple[str, int], list[float]] = {}
    for run in runners.values():  # warm-up
        run(faces[:16], 16)
        run(faces[:1], 1)
    for _ in range(args.rounds):
        for batch in (1, 16):
            for name, run in runners.items():
                start = time.perf_counter()
                if batch == 1:
                    for i in range(min(len(faces), 16)):
                        run(faces[i:i + 1], 1)
                    n = min(len(faces), 16)
                else:
                    run(faces, batch)
                    n = len(faces)
                timings.setdefault((name, batch), []).append(1000 * (time.perf_counter() - start) / n)
    rows = [{"model": name, "megabytes": None if sizes[name] is None else round(sizes[name], 1),
             "ms_per_face_batch_1": round(float(np.median(timings[(name, 1)])), 2),
             "ms_per_face_batch_16": round(float(np.median(timings[(name, 16)])), 2)} for name in runners]
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
