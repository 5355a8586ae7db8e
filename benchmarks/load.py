"""Load on the local gRPC server: many concurrent clients for a bounded time and request count.

    python -m benchmarks.load --clients 16 --seconds 20 --batch 8

Prints requests/s, faces/s, p50/p99 latency and the number of failed requests.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LoadResult:
    requests: int
    failures: int
    seconds: float
    latencies_ms: np.ndarray
    batch: int

    def line(self) -> str:
        p50, p99 = (np.percentile(self.latencies_ms, [50, 99]) if len(self.latencies_ms) else (float("nan"),) * 2)
        return (
            f"{self.requests} requests ({self.failures} failed) in {self.seconds:.1f} s: "
            f"{self.requests / self.seconds:.1f} requests/s, {self.requests * self.batch / self.seconds:.1f} faces/s, "
            f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )


def run_load(address: str, *, clients: int = 16, seconds: float = 10.0, max_requests: int = 2000, batch: int = 8,
             model: str = "gimefive", size: int = 64) -> LoadResult:
    """``clients`` threads, each with its own channel, send Predict calls until the time or request budget ends."""
    from clients.client import ClientError, EmotionClient

    deadline = time.monotonic() + seconds
    lock = threading.Lock()
    sent = [0]
    latencies: list[float] = []
    failures = [0]
    faces = np.random.default_rng(0).integers(0, 256, (batch, size, size, 1)).astype(np.uint8)

    def worker():
        client = EmotionClient(address, model, retries=0, timeout=30)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if sent[0] >= max_requests:
                        return
                    sent[0] += 1
                start = time.perf_counter()
                try:
                    client.predict(faces)
                    with lock:
                        latencies.append((time.perf_counter() - start) * 1000)
                except ClientError:
                    with lock:
                        failures[0] += 1
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return LoadResult(len(latencies) + failures[0], failures[0], time.monotonic() - started, np.array(latencies), batch)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.machine import describe
    from serving.local.embedded import start_embedded_server

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-base-path", default=str(Path(__file__).resolve().parents[1] / "models" / "gimefive"))
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--max-requests", type=int, default=5000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--batching", default=None, metavar="FILE",
                   help="server-side batching with this BatchingParameters file (serving/batching.config)")
    args = p.parse_args(argv)
    batching = None
    if args.batching:
        from serving.config import read_batching_parameters
        from serving.local.batching import BatchingOptions

        batching = BatchingOptions.from_parameters(read_batching_parameters(args.batching))
    server = start_embedded_server("gimefive", args.model_base_path, batching=batching)
    try:
        result = run_load(server.address, clients=args.clients, seconds=args.seconds, max_requests=args.max_requests,
                          batch=args.batch)
    finally:
        server.stop(grace=1.0)
    print(f"machine: {describe()}")
    mode = f"server-side batching {batching}" if batching else "no server-side batching"
    print(f"{args.clients} concurrent clients, batch {args.batch}, {mode}: {result.line()}")
    return 0 if result.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
