"""Benchmark scripts: each prints its figures and the machine it ran on (see BENCHMARKS.md)."""

import fer_keras  # noqa: F401  (its environment defaults for TensorFlow, set before TensorFlow loads)
