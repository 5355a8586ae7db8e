"""Soak run of the local server: many requests from many clients through restarts, a crash and version swaps.

Starts ``python -m serving.local`` (server-side batching on) as a process of its own, serving version 1 of
a model, under a supervisor (a restart loop here, as a container runtime's restart policy: a server that
exits unasked is started again on the same port a second later). Client threads (the library's default
retries) send Predict calls with random batch sizes 1-64 until both the request count and the minutes
are reached. Events, at shares of the run: the server stopped with SIGTERM and started again; killed with
SIGKILL (no goodbye: the supervisor brings it back); version 2, then with ``--minutes`` also version 3,
copied into the base path, each swapped to under load. With ``--minutes`` the events fall in the first
nine minutes, so that one process serves from the 10th minute to the end: its resident memory, sampled
every 10 s, is compared between the 10th and the last minute. Prints requests, failed (a ClientError
after the retries, by cause), lost (no answer at all), p50/p99 latency overall and per minute, and
memory; with ``--out``, soak.json and soak_memory.png (memory and latency over time, events marked).

    python -m benchmarks.soak                      # 10,000 requests, a tiny GiMeFive (fast: the server is the subject)
    python -m benchmarks.soak --model shipped --requests 2000
    python -m benchmarks.soak --requests 100000 --clients 64 --minutes 30 --out runs/soak   # deployment scale
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
    """Versions 1-3 of the model (2 and 3 are kept aside in ``base.parent / 'staging'`` until their swaps)."""
    from fer_keras.data.taxonomy import SIX
    from fer_keras.exporting import export_saved_model

    if which == "shipped":
        from fer_keras import pretrained

        model = pretrained.load("gimefive-fer2013")
    else:
        from fer_keras.models import build_model

        model = build_model("gimefive", width=1 / 16)
    export_saved_model(model, str(base.parent), base.name, SIX.classes, version=1)
    for version in (2, 3):
        export_saved_model(model, str(base.parent / "staging"), base.name, SIX.classes, version=version)


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
    """The server process on one port, with a supervisor that starts it again when it exits unasked, and
    its resident memory sampled every ``sample_s`` seconds (``samples``: seconds since ``t0``, MB, pid)."""

    def __init__(self, base: Path, port: int, sample_s: float = 10.0):
        self.base, self.port, self.proc, self.peaks = base, port, None, []
        self.sample_s, self.samples, self.t0 = sample_s, [], time.monotonic()
        self.restarts_unasked, self.watchers, self._stopping = 0, [], False
        self._lock = threading.Lock()

    def start(self) -> None:
        cmd = [sys.executable, "-m", "serving.local", "--model_base_path", str(self.base), "--port", str(self.port),
               "--file_system_poll_wait_seconds", "0.5", "--enable_batching", "--rest_api_port", "0"]
        with self._lock:
            self._stopping = False
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            watcher = threading.Thread(target=self._watch, args=(self.proc,), daemon=True)
        watcher.start()
        self.watchers.append(watcher)

    def _watch(self, proc) -> None:
        peak, last = 0, 0.0
        while proc.poll() is None:
            try:
                status = open(f"/proc/{proc.pid}/status").read().splitlines()
            except OSError:
                break
            for line in status:
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) // 1024)
                if line.startswith("VmRSS:") and time.monotonic() - last >= self.sample_s:
                    last = time.monotonic()
                    self.samples.append((round(last - self.t0, 1), int(line.split()[1]) // 1024, proc.pid))
            time.sleep(0.2)
        proc.wait()
        self.peaks.append(peak)
        with self._lock:
            unasked = not self._stopping and proc is self.proc
        if unasked:  # the supervisor: a crash, an OOM kill, a SIGKILL
            self.restarts_unasked += 1
            time.sleep(1.0)
            self.start()

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a lost node would: the supervisor restarts it."""
        self.proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def per_minute(done: list[tuple[float, float]]) -> list[dict]:
    """p50/p99 latency (ms) and requests of each minute, from (seconds since start, ms) pairs."""
    rows = []
    if not done:
        return rows
    t = np.array([d[0] for d in done])
    ms = np.array([d[1] for d in done])
    for minute in range(int(t.max() // 60) + 1):
        pick = (t >= 60 * minute) & (t < 60 * (minute + 1))
        if pick.any():
            rows.append({"minute": minute + 1, "requests": int(pick.sum()), "p50_ms": round(float(np.percentile(
                ms[pick], 50)), 1), "p99_ms": round(float(np.percentile(ms[pick], 99)), 1)})
    return rows


def plot(samples, minutes, events, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    pids = list(dict.fromkeys(p for _, _, p in samples))
    for k, pid in enumerate(pids):
        pts = [(t / 60, mb) for t, mb, p in samples if p == pid]
        top.plot(*zip(*pts), marker=".", label=f"server process {k + 1}")
    top.set_ylabel("resident memory (MB)")
    top.set_ylim(bottom=0)
    top.legend(fontsize=7, loc="lower right")
    if minutes:
        x = [m["minute"] - 0.5 for m in minutes]
        bottom.plot(x, [m["p50_ms"] for m in minutes], label="p50")
        bottom.plot(x, [m["p99_ms"] for m in minutes], label="p99")
    bottom.set_ylabel("latency per minute (ms)")
    bottom.set_xlabel("minutes")
    bottom.legend(fontsize=7)
    for when, what in events:
        for ax in (top, bottom):
            ax.axvline(when / 60, color="grey", lw=0.8, ls="--")
        top.annotate(what, (when / 60, 0), rotation=90, fontsize=7, va="bottom", ha="right", color="grey")
    fig.suptitle("Soak: the server's memory and latency over the run")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import json
    from collections import Counter

    from benchmarks.machine import describe
    from clients.client import ClientError, EmotionClient
    from serving.local.server import DEFAULT_MAX_INFLIGHT_BYTES, RUN_CHUNK, RUN_SLOTS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=10_000, help="at least this many requests")
    p.add_argument("--minutes", type=float, default=0.0,
                   help="and at least this long; events then fall in the first nine minutes (at least 12)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--model", choices=("tiny", "shipped"), default="tiny")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write soak.json and soak_memory.png here")
    args = p.parse_args(argv)
    if args.minutes and args.minutes < 12:
        p.error("--minutes must be 0 or at least 12 (the events take the first nine, memory is compared from the 10th)")

    work = Path(tempfile.mkdtemp(prefix="soak-"))
    base = work / "models" / "gimefive"
    export_versions(base, args.model)
    server = ServerProcess(base, free_port())
    server.start()
    address = f"127.0.0.1:{server.port}"
    lock = threading.Lock()
    issued, done, failed, lost, errors = [0], [], [0], [0], Counter()
    rng = np.random.default_rng(args.seed)
    pool = rng.integers(0, 256, (64, 64, 64, 1)).astype(np.uint8)
    started = time.monotonic()

    def more() -> bool:
        return issued[0] < args.requests or time.monotonic() - started < 60 * args.minutes

    def worker(k: int) -> None:
        local = np.random.default_rng([args.seed, k])
        client = EmotionClient(address, "gimefive", timeout=30, connect_timeout=120)
        try:
            while True:
                with lock:
                    if not more():
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
                        done.append((time.monotonic() - started, 1000 * (time.perf_counter() - start)))
                except ClientError as err:
                    with lock:
                        failed[0] += 1
                        errors[f"{type(err).__name__}: {err}"[:160]] += 1
        finally:
            client.close()

    # When each event happens: minutes into the run (with --minutes), else a share of the requests.
    def reached(share: float, minute: float) -> bool:
        if args.minutes:
            return time.monotonic() - started >= 60 * minute
        return issued[0] >= share * args.requests

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    events: list[tuple[float, str]] = []

    def note(what: str) -> None:
        events.append((time.monotonic() - server.t0, what))

    plan = [(0.2, 3.0, "restart"), (0.4, 5.0, "kill"), (0.6, 7.0, "version 2"), (0.8, 8.5, "version 3")]
    for share, minute, what in plan:
        while not reached(share, minute) and any(t.is_alive() for t in threads):
            time.sleep(0.1)
        if what == "restart":
            stopping = time.monotonic()
            server.stop()
            server.start()
            note(f"SIGTERM restart (stopped in {time.monotonic() - stopping:.1f} s)")
        elif what == "kill":
            server.kill()
            note("SIGKILL; the supervisor restarts it")
        else:
            version = what.split()[1]
            shutil.copytree(work / "models" / "staging" / "gimefive" / version, base / version)
            note(f"version {version} copied in")
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    served = model_status(address)
    server.stop()
    for watcher in server.watchers:
        watcher.join(timeout=5)
    shutil.rmtree(work, ignore_errors=True)
    lat = np.array([ms for _, ms in done])
    minutes = per_minute(done)
    bound = (DEFAULT_MAX_INFLIGHT_BYTES // 2**20, RUN_CHUNK, RUN_SLOTS)
    print(f"machine: {describe()}")
    print(f"model: {'shipped GiMeFive' if args.model == 'shipped' else 'tiny GiMeFive (width 1/16)'}; "
          f"{args.clients} clients (default retries), batch sizes 1-64, server-side batching on")
    print("events: " + "; ".join(f"{what} at {when / 60:.1f} min" for when, what in events) +
          f"; unasked restarts by the supervisor: {server.restarts_unasked}; at the end: {served}")
    print(f"{len(lat) + failed[0] + lost[0]} requests in {elapsed:.1f} s: {failed[0]} failed, {lost[0]} lost; "
          f"latency p50 {np.percentile(lat, 50):.1f} ms, p99 {np.percentile(lat, 99):.1f} ms")
    for line, count in errors.most_common(5):
        print(f"  failed {count}x: {line}")
    print("per minute (requests, p50 / p99 ms): " + "; ".join(
        f"{m['minute']}: {m['requests']}, {m['p50_ms']:.0f} / {m['p99_ms']:.0f}" for m in minutes))
    print(f"server peak resident memory per process (MB): {server.peaks}; bound: in-flight request tensors "
          f"<= {bound[0]} MB, model runs of <= {bound[1]} faces, {bound[2]} at a time")
    flat = None
    if args.minutes and server.samples:
        last_pid = server.samples[-1][2]
        mine = [(t - (started - server.t0), mb) for t, mb, pid in server.samples if pid == last_pid]
        at_10 = [mb for t, mb in mine if 540 <= t < 660]
        at_end = [mb for t, mb in mine if t >= elapsed - 60]
        if at_10 and at_end:
            flat = {"minute_10_mb": float(np.median(at_10)), "last_minute_mb": float(np.median(at_end))}
            flat["change_percent"] = round(100 * (flat["last_minute_mb"] / flat["minute_10_mb"] - 1), 2)
            print(f"resident memory of the last server process, sampled every {server.sample_s:.0f} s: "
                  f"{flat['minute_10_mb']:.0f} MB at the 10th minute, {flat['last_minute_mb']:.0f} MB in the last "
                  f"({flat['change_percent']:+.1f} %)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        plot(server.samples, minutes, events, out / "soak_memory.png")
        (out / "soak.json").write_text(json.dumps({
            "requests": len(lat) + failed[0] + lost[0], "seconds": round(elapsed, 1), "failed": failed[0],
            "lost": lost[0], "failures": dict(errors), "events": events, "per_minute": minutes,
            "memory_samples": server.samples, "peaks_mb": server.peaks, "flat": flat,
            "restarts_unasked": server.restarts_unasked, "at_the_end": served}, indent=1))
        print(f"wrote {out / 'soak.json'} and {out / 'soak_memory.png'}")
    return 0 if failed[0] == 0 and lost[0] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
