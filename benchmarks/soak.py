"""Soak run of the local server: thousands of requests from many clients through a restart and a version swap.

Starts ``python -m serving.local`` (server-side batching on) as a process of its own, serving version 1 of
a model; 16 client threads (the library's default retries) send Predict calls with random batch sizes
1-64 until the request count is reached. A third of the way through the server is stopped (SIGTERM)
and started again on the same port; two thirds through, version 2 is copied into the base path and
the server swaps to it while requests keep coming. Prints requests, failed (a ClientError after the
retries), lost (no answer at all), p50/p99 latency, and the peak resident memory of each server process
(VmHWM), against the server's stated bound.

    python -m benchmarks.soak                      # 10,000 requests, a tiny GiMeFive (fast: the server is the subject)
    python -m benchmarks.soak --model shipped --requests 2000
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def export_versions(base: Path, which: str) -> None:
    """Versions 1 and 2 of the model (2 is kept aside in ``base.parent / 'v2'`` until the swap)."""
    from fer_keras.data.taxonomy import SIX
    from fer_keras.exporting import export_saved_model

    if which == "shipped":
        from fer_keras import pretrained

        model = pretrained.load("gimefive-fer2013")
    else:
        from fer_keras.models import build_model

        model = build_model("gimefive", width=1 / 16)
    export_saved_model(model, str(base.parent), base.name, SIX.classes, version=1)
    export_saved_model(model, str(base.parent / "staging"), base.name, SIX.classes, version=2)


def model_status(address: str) -> str:
    """The versions' states in words, from GetModelStatus: e.g. "version 2 AVAILABLE, version 1 END"."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = "gimefive"
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=30)
    names = get_model_status_pb2.ModelVersionStatus.State
    return ", ".join(f"version {v.version} {names.Name(v.state)}" for v in response.model_version_status)


class ServerProcess:
    def __init__(self, base: Path, port: int):
        self.base, self.port, self.proc, self.peaks = base, port, None, []

    def start(self) -> None:
        self.watchers = getattr(self, "watchers", [])
        cmd = [sys.executable, "-m", "serving.local", "--model_base_path", str(self.base), "--port", str(self.port),
               "--file_system_poll_wait_seconds", "0.5", "--enable_batching", "--rest_api_port", "0"]
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        watcher = threading.Thread(target=self._watch, args=(self.proc,), daemon=True)
        watcher.start()
        self.watchers.append(watcher)

    def _watch(self, proc) -> None:
        peak = 0
        while proc.poll() is None:
            try:
                for line in open(f"/proc/{proc.pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) // 1024)
            except OSError:
                break
            time.sleep(0.2)
        self.peaks.append(peak)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.machine import describe
    from clients.client import ClientError, EmotionClient
    from serving.local.server import DEFAULT_MAX_INFLIGHT_BYTES, RUN_CHUNK, RUN_SLOTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--model", choices=("tiny", "shipped"), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    base = work / "models" / "gimefive"
    export_versions(base, args.model)
    server = ServerProcess(base, free_port())
    server.start()
    address = f"127.0.0.1:{server.port}"
    lock = threading.Lock()
    issued, latencies, failed, lost, errors = [0], [], [0], [0], []
    rng = np.random.default_rng(args.seed)
    pool = rng.integers(0, 256, (64, 64, 64, 1)).astype(np.uint8)

    def worker(k: int) -> None:
        local = np.random.default_rng([args.seed, k])
        client = EmotionClient(address, "gimefive", timeout=30, connect_timeout=120)
        try:
            while True:
                with lock:
                    if issued[0] >= args.requests:
                        return
                    issued[0] += 1
                n = int(local.integers(1, 65))
                start = time.perf_counter()
                try:
                    result = client.predict(pool[:n])
                    if result.probabilities.shape != (n, 6):
                        with lock:
                            lost[0] += 1
                        continue
                    with lock:
                        latencies.append(1000 * (time.perf_counter() - start))
                except ClientError as err:
                    with lock:
                        failed[0] += 1
                        errors.append(f"{type(err).__name__}: {err}"[:200])
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    events = []
    while issued[0] < args.requests // 3:
        time.sleep(0.1)
    stopping = time.monotonic()
    server.stop()
    server.start()
    events.append(
        f"restart at request {issued[0]} (SIGTERM, stopped in {time.monotonic() - stopping:.1f} s, then a new "
        "process on the same port)"
    )
    while issued[0] < 2 * args.requests // 3:
        time.sleep(0.1)
    shutil.copytree(work / "models" / "staging" / "gimefive" / "2", base / "2")
    events.append(f"version 2 copied in at request {issued[0]}")
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    served = model_status(address)
    server.stop()
    for watcher in server.watchers:
        watcher.join(timeout=5)
    shutil.rmtree(work, ignore_errors=True)
    lat = np.array(latencies)
    bound = (DEFAULT_MAX_INFLIGHT_BYTES // 2**20, RUN_CHUNK, RUN_SLOTS)
    print(f"machine: {describe()}")
    print(f"model: {'shipped GiMeFive' if args.model == 'shipped' else 'tiny GiMeFive (width 1/16)'}; "
          f"{args.clients} clients (default retries), batch sizes 1-64, server-side batching on")
    print("events: " + "; ".join(events) + f"; at the end: {served}")
    print(f"{len(lat) + failed[0] + lost[0]} requests in {elapsed:.1f} s: {failed[0]} failed, {lost[0]} lost; "
          f"latency p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    for line in sorted(set(errors))[:5]:
        print(f"  failure: {line}")
    print(f"server peak resident memory per process (MB): {server.peaks}; bound: in-flight request tensors "
          f"<= {bound[0]} MB, model runs of <= {bound[1]} faces, {bound[2]} at a time")
    return 0 if failed[0] == 0 and lost[0] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
