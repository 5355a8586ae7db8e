"""Training and inference throughput of GiMeFive: this package (Keras) against a PyTorch reference.

    pip install -e '.[bench]'          # torch 2.13.0, CPU build
    python -m benchmarks.throughput

Both frameworks run the same architecture (GiMeFive, 10.48 M parameters) on
the same random 64x64 batches with the same thread count, each in its own
process. Training is SGD with momentum 0.9 and weight decay 1e-4 on
cross-entropy; inference is in eval mode. Keras runs in three ways: as
``model.fit`` compiles it by default, with XLA (``jit_compile=True``), and
inference through the exported-model path (a ``tf.function`` call); and
``keras-bf16`` under Keras' ``mixed_bfloat16`` policy (``--precision
mixed_bfloat16`` of training), which uses AMX / AVX512-BF16 where the CPU has them.
``keras-jax`` is the same Keras model and ``fit`` on the JAX backend
(``KERAS_BACKEND=jax``; JAX from the ``bench`` extra), fed NumPy arrays.
``keras-eigen`` is ``keras`` with TensorFlow's oneDNN kernels off (``TF_ENABLE_ONEDNN_OPTS=0``):
the package turns them on where TensorFlow would leave them off (CPUs without AVX-512; ``fer_keras``).
``--rounds`` runs the list that many times, interleaved, each round's figures printed.
On a 2-core AMD EPYC the timed ``fit`` kept landing on 20.5 or 41 s for 640 images whatever the
setting: there, trust longer measurements (BENCHMARKS.md, "TensorFlow's oneDNN kernels on an AVX2 CPU").

    python -m benchmarks.throughput --frameworks keras,keras-eigen --batch 64 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.machine import describe


def keras_figures(batch: int, steps: int, threads: int, jit: bool, policy: str = "float32") -> dict:
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    keras.mixed_precision.set_global_policy(policy)
    from fer_keras.models import build_model
    from fer_keras.optim import CoupledSGD

    model = build_model("gimefive")
    model.compile(optimizer=CoupledSGD(l2=1e-4, learning_rate=1e-3, momentum=0.9),
                  loss={"logits": keras.losses.CategoricalCrossentropy(from_logits=True)}, jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, 64, 64, 1)).astype(np.float32)
    y = np.eye(6, dtype=np.float32)[rng.integers(0, 6, batch)]
    ds = tf.data.Dataset.from_tensors((x, {"logits": y})).repeat()
    model.fit(ds, steps_per_epoch=3, epochs=1, verbose=0)  # build and compile
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    train = batch * steps / (time.perf_counter() - start)

    infer_batch = 128
    xi = tf.constant(rng.integers(0, 256, (infer_batch, 64, 64, 1)).astype(np.float32))
    call = tf.function(lambda t: model(t, training=False)["probabilities"], jit_compile=jit)
    for _ in range(3):
        call(xi).numpy()
    start = time.perf_counter()
    for _ in range(steps):
        call(xi).numpy()
    infer = infer_batch * steps / (time.perf_counter() - start)
    from tensorflow.python.util import _pywrap_util_port

    return {"train_images_per_s": train, "inference_images_per_s": infer,
            "onednn": bool(_pywrap_util_port.IsMklEnabled())}


def jax_figures(batch: int, steps: int) -> dict:
    """The Keras model on the JAX backend (the child process sets KERAS_BACKEND before importing Keras)."""
    import keras

    from fer_keras.models import build_model
    from fer_keras.optim import CoupledSGD

    assert keras.backend.backend() == "jax", keras.backend.backend()
    model = build_model("gimefive")
    model.compile(optimizer=CoupledSGD(l2=1e-4, learning_rate=1e-3, momentum=0.9),
                  loss={"logits": keras.losses.CategoricalCrossentropy(from_logits=True)})
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, 64, 64, 1)).astype(np.float32)
    y = np.eye(6, dtype=np.float32)[rng.integers(0, 6, batch)]
    xs, ys = np.concatenate([x] * steps), {"logits": np.concatenate([y] * steps)}
    model.fit(xs[: 3 * batch], {"logits": ys["logits"][: 3 * batch]}, batch_size=batch, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    train = batch * steps / (time.perf_counter() - start)
    xi = rng.integers(0, 256, (128, 64, 64, 1)).astype(np.float32)
    for _ in range(3):
        np.asarray(model.predict_on_batch(xi)["probabilities"])
    start = time.perf_counter()
    for _ in range(steps):
        np.asarray(model.predict_on_batch(xi)["probabilities"])
    infer = 128 * steps / (time.perf_counter() - start)
    return {"train_images_per_s": train, "inference_images_per_s": infer}


def torch_figures(batch: int, steps: int, threads: int) -> dict:
    import torch

    from benchmarks.torch_gimefive import TorchGiMeFive

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = TorchGiMeFive()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randint(0, 256, (batch, 1, 64, 64)).float()
    y = torch.randint(0, 6, (batch,))

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    model.train()
    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    train = batch * steps / (time.perf_counter() - start)
    model.eval()
    xi = torch.randint(0, 256, (128, 1, 64, 64)).float()
    with torch.inference_mode():
        for _ in range(3):
            model(xi)
        start = time.perf_counter()
        for _ in range(steps):
            torch.softmax(model(xi), dim=1)
    infer = 128 * steps / (time.perf_counter() - start)
    return {"train_images_per_s": train, "inference_images_per_s": infer}


def _child(args) -> None:
    if args.framework == "torch":
        figures = torch_figures(args.batch, args.steps, args.threads)
    elif args.framework == "keras-jax":
        figures = jax_figures(args.batch, args.steps)
    else:
        figures = keras_figures(args.batch, args.steps, args.threads, jit=args.framework == "keras-xla",
                                policy="mixed_bfloat16" if args.framework == "keras-bf16" else "float32")
    print("RESULT " + json.dumps(figures))


def _run(framework: str, args) -> dict | None:
    cmd = [sys.executable, "-m", "benchmarks.throughput", "--child", framework, "--batch", str(args.batch),
           "--steps", str(args.steps), "--threads", str(args.threads)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if framework == "keras-jax":
        env["KERAS_BACKEND"] = "jax"
    if framework == "keras-eigen":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    print(f"{framework} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32, help="training batch size. Default: %(default)s")
    p.add_argument("--steps", type=int, default=20, help="timed steps. Default: %(default)s")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both. Default: all cores")
    p.add_argument("--frameworks", default="keras,keras-xla,keras-bf16,keras-jax,torch",
                   help="comma-separated: keras, keras-eigen, keras-xla, keras-bf16, keras-jax, torch. "
                        "Default: %(default)s")
    p.add_argument("--rounds", type=int, default=1, help="times the list runs, interleaved. Default: %(default)s")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.framework = args.child
        _child(args)
        return 0
    rounds = [{f: _run(f, args) for f in args.frameworks.split(",")} for _ in range(args.rounds)]
    results = rounds[-1]
    print(f"machine: {describe()}; {args.threads} threads; training batch {args.batch}, inference batch 128")
    print("| implementation | round | train images/s | inference images/s | TensorFlow's oneDNN kernels |")
    print("|---|---|---|---|---|")
    for k, figures in enumerate(rounds, 1):
        for name, r in figures.items():
            if r:
                onednn = {True: "on", False: "off"}.get(r.get("onednn"), "-")
                print(f"| {name} | {k} | {r['train_images_per_s']:.1f} | {r['inference_images_per_s']:.1f} "
                      f"| {onednn} |")
    if results.get("torch"):
        t = results["torch"]
        for name in ("keras", "keras-xla", "keras-bf16"):
            if results.get(name):
                r = results[name]
                print(f"{name} / torch: training {r['train_images_per_s'] / t['train_images_per_s']:.2f}x, "
                      f"inference {r['inference_images_per_s'] / t['inference_images_per_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
