"""The video client against a model server that keeps dying.

Builds (or takes) a labelled one-minute video, starts the local model server as its own process on a
fixed port, and runs ``python -m clients.video`` against it while a chaos loop here SIGKILLs the server
``--kill-every`` seconds after each time it serves again and starts it again after ``--down`` seconds (the
supervisor: a restart loop in this script, as a container runtime's restart policy would; a start takes
the server 5-15 s here, so it serves about half the time). Once, at ``--long-outage-at``
seconds, the server stays down for ``--long-outage`` seconds, longer than the client's retry budget
(``--retries`` with backoff doubling from 0.2 s to 5 s): the client must then stop with one error and
exit 2, keeping every frame it wrote, the frames it could not classify marked; the script brings the
server back and runs the same command with ``--resume``. Prints each run's exit status and message,
the kills, and checks frames.jsonl: every frame once, in order, every one classified at the end.

    python -m benchmarks.video_chaos --out runs/video-chaos
    python -m benchmarks.video_chaos --out runs/video-chaos --long-outage 0     # kills only
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.machine import describe
from benchmarks.video_benchmark import DEFAULT_FER2013, build_shots

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Supervised:
    """The local model server as a child process on one port, killed and restarted on demand."""

    def __init__(self, base: str, port: int, log: Path):
        self.base, self.port, self.log = base, port, log
        self.proc: subprocess.Popen | None = None
        self.kills = 0

    def start(self) -> None:
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "serving.local", "--port", str(self.port),
                                          "--model_name", "gimefive", "--model_base_path", self.base,
                                          "--rest_api_port", "0"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    def wait_serving(self, stop: threading.Event, timeout: float = 180.0) -> float:
        """Waits until the model is AVAILABLE (seconds waited)."""
        from benchmarks.soak import model_status

        began = time.monotonic()
        while not stop.is_set() and time.monotonic() - began < timeout:
            try:
                if "AVAILABLE" in model_status(f"127.0.0.1:{self.port}"):
                    break
            except Exception:  # not up yet: refused, or the model not known yet
                pass
            stop.wait(0.25)
        return time.monotonic() - began

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def chaos(server: Supervised, stop: threading.Event, every: float, down: float, outage_at: float,
          outage: float, events: list[str]) -> None:
    """Kills the server ``every`` s after it serves again, restarting it ``down`` s later; once (the first
    kill from ``outage_at`` s on) it stays down ``outage`` s."""
    began = time.monotonic()
    outage_done = outage <= 0
    while not stop.is_set():
        ready = server.wait_serving(stop)
        if stop.wait(every):
            break
        server.kill()
        gap = down
        if not outage_done and time.monotonic() - began >= outage_at:
            gap, outage_done = outage, True
        events.append(f"{time.monotonic() - began:6.1f} s: SIGKILL after {every:.0f} s of service (it had taken "
                      f"{ready:.1f} s to serve), down {gap:.0f} s")
        if stop.wait(gap):
            break
        server.start()


def check(jsonl: Path, frames: int) -> dict:
    records = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.is_file() else []
    order = [r["frame"] for r in records]
    return {"records": len(records), "in_order_once": order == list(range(len(records))),
            "not_classified": sum(r.get("classified") is False for r in records), "expected": frames}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fer2013", default=str(DEFAULT_FER2013), help="FER2013 Kaggle folders (the video's faces)")
    p.add_argument("--video", default=None, help="a video to analyse instead of building one")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the built video")
    p.add_argument("--kill-every", type=float, default=10.0, help="seconds of service between SIGKILLs")
    p.add_argument("--down", type=float, default=2.0, help="seconds the server stays down after a kill")
    p.add_argument("--long-outage-at", type=float, default=25.0, help="when the long outage starts (s)")
    p.add_argument("--long-outage", type=float, default=60.0, help="its length (s; 0: none)")
    p.add_argument("--retries", type=int, default=10,
                   help="the video client's --retries (its default, 10: 31 s of backoff)")
    p.add_argument("--out", default="runs/video-chaos", help="video, server log and the client's outputs")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video = Path(args.video) if args.video else out / "chaos.mp4"
    if not args.video and not video.is_file():
        if not Path(args.fer2013, "test").is_dir():
            print(f"error: FER2013 not found at {args.fer2013}", file=sys.stderr)
            return 2
        try:
            build_shots(Path(args.fer2013), video, args.seconds, 90, seed=11, background="textured")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    import cv2

    from fer_keras.exporting import serving_base

    capture = cv2.VideoCapture(str(video))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    server = Supervised(str(serving_base(None)), _free_port(), out / "server.log")
    server.start()
    events: list[str] = []
    stop = threading.Event()
    command = [sys.executable, "-m", "clients.video", str(video), "--server", f"127.0.0.1:{server.port}",
               "--out-dir", str(out / "client"), "--retries", str(args.retries), "--timeout", "5"]
    print(f"machine: {describe()}")
    print(f"video: {video} ({frames} frames); server killed every {args.kill_every:.0f} s, down {args.down:.0f} s; "
          f"one outage of {args.long_outage:.0f} s at {args.long_outage_at:.0f} s; client --retries {args.retries}")
    runs = []
    try:
        loop = threading.Thread(target=chaos, args=(server, stop, args.kill_every, args.down, args.long_outage_at,
                                                    args.long_outage, events), daemon=True)
        loop.start()
        for attempt in range(4):
            began = time.monotonic()
            run = subprocess.run(command + (["--resume"] if attempt else []), cwd=REPO, capture_output=True,
                                 text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            message = [line for line in run.stderr.splitlines() if line.startswith("error:")] or (
                run.stderr.strip().splitlines()[-1:] if run.returncode else [])
            summary = [line for line in run.stdout.splitlines() if line.strip()]
            runs.append({"exit": run.returncode, "seconds": round(time.monotonic() - began, 1),
                         "error": message[-1] if message else None, "said": summary[-2:], **check(
                             out / "client" / "frames.jsonl", frames)})
            print(f"run {attempt + 1}{' (--resume)' if attempt else ''}: exit {run.returncode} after "
                  f"{runs[-1]['seconds']} s; {runs[-1]['records']} frames in frames.jsonl, in order once: "
                  f"{runs[-1]['in_order_once']}, marked not classified: {runs[-1]['not_classified']}"
                  + (f"\n  {message[-1][:400]}" if message else "") + "".join(f"\n  {s}" for s in summary[-2:]),
                  flush=True)
            if run.returncode == 0:
                break
            while server.proc is None or server.proc.poll() is not None:  # the resume waits for the supervisor
                time.sleep(0.5)
    finally:
        stop.set()
        server.kill()
    print("kills: " + "; ".join(events))
    final = runs[-1]
    ok = final["exit"] == 0 and final["in_order_once"] and final["records"] == frames and not final["not_classified"]
    print(f"end: {final['records']} of {frames} frames, each once and in order, all classified: {ok}")
    (out / "chaos.json").write_text(json.dumps({"runs": runs, "kills": events, "frames": frames, "ok": ok}, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
