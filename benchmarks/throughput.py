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
Each figure is the batch over the *median* time of ``--steps`` timed steps (each training step, each
inference call timed alone), with the slowest and fastest step beside it: on shared machines a step now
and then takes twice as long, and a single timed ``fit`` over all the steps landed on 20.5 or 41 s for
640 images on a 2-core AMD EPYC whatever the setting.

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


def timed(step, times: int) -> list[float]:
    """Seconds each of ``times`` calls of ``step`` took."""
    seconds = []
    for _ in range(times):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    return seconds


def rate(images: int, seconds: list[float]) -> dict:
    """Images per second at the median step time, and at the slowest and fastest step."""
    return {"median": images / float(np.median(seconds)), "slowest": images / max(seconds),
            "fastest": images / min(seconds)}


def _figures(train: dict, infer: dict, **more) -> dict:
    return {"train_images_per_s": train["median"], "train_range": [train["slowest"], train["fastest"]],
            "inference_images_per_s": infer["median"], "inference_range": [infer["slowest"], infer["fastest"]],
            **more}


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
    labels = {"logits": y}
    model.train_on_batch(x, labels)  # its first call traces again
    train = rate(batch, timed(lambda: model.train_on_batch(x, labels), steps))  # fit's compiled step, one at a time

    xi = tf.constant(rng.integers(0, 256, (128, 64, 64, 1)).astype(np.float32))
    call = tf.function(lambda t: model(t, training=False)["probabilities"], jit_compile=jit)
    for _ in range(3):
        call(xi).numpy()
    infer = rate(128, timed(lambda: call(xi).numpy(), steps))
    return _figures(train, infer, onednn=onednn_enabled())


def onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN kernels in this process; None where it cannot say.

    TensorFlow offers no public call for this; its internal ``IsMklEnabled`` is asked, and a TensorFlow
    without it leaves the table's column at "-" instead of stopping the benchmark."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


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
    model.fit(np.concatenate([x] * 3), {"logits": np.concatenate([y] * 3)}, batch_size=batch, epochs=1, verbose=0)
    labels = {"logits": y}
    model.train_on_batch(x, labels)
    train = rate(batch, timed(lambda: model.train_on_batch(x, labels), steps))
    xi = rng.integers(0, 256, (128, 64, 64, 1)).astype(np.float32)
    for _ in range(3):
        np.asarray(model.predict_on_batch(xi)["probabilities"])
    infer = rate(128, timed(lambda: np.asarray(model.predict_on_batch(xi)["probabilities"]), steps))
    return _figures(train, infer)


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
    train = rate(batch, timed(step, steps))
    model.eval()
    xi = torch.randint(0, 256, (128, 1, 64, 64)).float()
    with torch.inference_mode():
        for _ in range(3):
            model(xi)
        infer = rate(128, timed(lambda: torch.softmax(model(xi), dim=1), steps))
    return _figures(train, infer)


def _child(args) -> None:
    if args.framework == "torch":
        figures = torch_figures(args.batch, args.steps, args.threads)
    elif args.framework == "keras-jax":
        figures = jax_figures(args.batch, args.steps)
    else:
        figures = keras_figures(args.batch, args.steps, args.threads, jit=args.framework == "keras-xla",
                                policy="mixed_bfloat16" if args.framework == "keras-bf16" else "float32")
    print("RESULT " + json.dumps(figures))


FRAMEWORKS = ("keras", "keras-eigen", "keras-xla", "keras-bf16", "keras-jax", "torch")


def parse_frameworks(text: str) -> list[str]:
    """The ``--frameworks`` list: known names, each once (``--rounds`` repeats the list)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FRAMEWORKS]
    if unknown or not names:
        raise ValueError(f"--frameworks {text!r}: unknown {unknown or 'empty list'}; "
                         f"choose from {', '.join(FRAMEWORKS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--frameworks {text!r} names {', '.join(repeated)} more than once; name each once and "
                         "pass --rounds N to run the list N times, interleaved (each round is printed)")
    return names


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


def _range(pair) -> str:
    return f"{pair[0]:.1f}-{pair[1]:.1f}" if pair else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=32, help="training batch size. Default: %(default)s")
    p.add_argument("--steps", type=int, default=20, help="timed steps. Default: %(default)s")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both. Default: all cores")
    p.add_argument("--frameworks", default="keras,keras-xla,keras-bf16,keras-jax,torch",
                   help=f"comma-separated, each once: {', '.join(FRAMEWORKS)}. Default: %(default)s")
    p.add_argument("--rounds", type=int, default=1, help="times the list runs, interleaved. Default: %(default)s")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.framework = args.child
        _child(args)
        return 0
    try:
        frameworks = parse_frameworks(args.frameworks)
    except ValueError as err:
        p.error(str(err))
    if args.rounds < 1:
        p.error(f"--rounds must be at least 1; got {args.rounds}")
    rounds = [{f: _run(f, args) for f in frameworks} for _ in range(args.rounds)]
    results = rounds[-1]
    print(f"machine: {describe()}; {args.threads} threads; training batch {args.batch}, inference batch 128")
    print(f"images/s at the median of {args.steps} timed steps (slowest step - fastest step)")
    print("| implementation | round | train images/s | inference images/s | TensorFlow's oneDNN kernels |")
    print("|---|---|---|---|---|")
    for k, figures in enumerate(rounds, 1):
        for name, r in figures.items():
            if r:
                onednn = {True: "on", False: "off"}.get(r.get("onednn"), "-")
                print(f"| {name} | {k} | {r['train_images_per_s']:.1f} ({_range(r.get('train_range'))}) "
                      f"| {r['inference_images_per_s']:.1f} ({_range(r.get('inference_range'))}) | {onednn} |")
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
