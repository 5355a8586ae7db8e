"""Benchmark scripts: each prints its figures and the machine it ran on (see BENCHMARKS.md)."""
