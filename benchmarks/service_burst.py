"""Bursts of parallel clients against the analysis service: what each gets, and the service's memory.

Starts ``python -m clients.service`` (embedded model server, shipped models) as a user would, then sends
``--rounds`` bursts of ``--clients`` parallel requests (with ``--minutes``, bursts until that long), each a
FER2013 test face in a 640x480 scene (a JPEG) or, with ``--hostile``, one of a hostile set in turn (not an
image, a truncated JPEG, a PNG header declaring 20,000 x 20,000 pixels, a real decompression bomb: a
valid 8,000 x 8,000 PNG of 62 kB, a 4,000 x 4,000 PNG within the limit that does decode, an empty body, a
bad stream id); with ``--hostile`` each burst also has ``--slow`` clients that declare a body, send a
little of it and stall. Prints per round the answers by status and the service's resident memory (VmRSS
of its process, sampled every 50 ms during the round)::

    python -m benchmarks.service_burst --data ../shared/data/fer2013 --rounds 10 --clients 64
    python -m benchmarks.service_burst --data ../shared/data/fer2013 --rounds 10 --clients 64 --hostile
    python -m benchmarks.service_burst --data ../shared/data/fer2013 --minutes 30 --clients 64 --hostile
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

from benchmarks.fakecam import fer2013_test_faces, scene
from benchmarks.page_fps import start_service


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def jpeg(rgb) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=85)
    return out.getvalue()


def hostile_set(photo: bytes) -> list[tuple[str, bytes, dict]]:
    ihdr = struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0)
    bomb = (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
            + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + struct.pack(">I", 0) + b"IEND"
            + struct.pack(">I", zlib.crc32(b"IEND")))
    return [("not an image", b"GIF? no: plain text " * 50, {}), ("truncated JPEG", photo[: len(photo) // 3], {}),
            ("20000x20000 PNG header", bomb, {}), ("8000x8000 PNG bomb", blank_png(8000), {}),
            ("4000x4000 PNG", blank_png(4000), {}), ("empty body", b"", {}),
            ("bad stream id", photo, {"stream": "no such id!"})]


def blank_png(side: int) -> bytes:
    """A valid grey PNG of ``side`` x ``side`` zeros: a few kilobytes that decode to ``side**2`` bytes."""
    out = io.BytesIO()
    Image.new("L", (side, side)).save(out, "PNG", optimize=False)
    return out.getvalue()


def slow_client(url: str, hold: float) -> str:
    """Declares a 200 kB body, sends 1 kB of it and stalls: what the service answers (or how it ends)."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=hold + 30) as sock:
        sock.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                     b"Content-Length: 200000\r\n\r\n" + b"\xff" * 1000)
        try:
            answer = sock.recv(200)
        except TimeoutError:
            return "no answer"
    status = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/") else "closed"
    return f"slow client: {status}"


def _sample(pid: int, into: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        into.append(rss_mb(pid))
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.service_burst", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="FER2013 root (its test faces are the photos)")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--hostile", action="store_true", help="every other request from the hostile set")
    p.add_argument("--explain", default="gradact-fused", help="explanation method asked for ('none': none)")
    p.add_argument("--minutes", type=float, default=0.0, help="keep sending bursts until this long (0: --rounds)")
    p.add_argument("--slow", type=int, default=4, help="with --hostile: stalling clients in each burst")
    args = p.parse_args(argv)
    faces = [f for label in ("happiness", "sadness", "anger", "surprise") for _, f in
             fer2013_test_faces(Path(args.data), label, 4)]
    photos = [jpeg(scene(face, seed=k)) for k, face in enumerate(faces)]
    hostile = hostile_set(photos[0])
    process, url = start_service()
    pid = process.pid
    rows = []
    try:
        reference = httpx.post(f"{url}v1/analyze", files={"image": ("p.jpg", photos[0], "image/jpeg")},
                               timeout=120).json()["faces"]
        base = rss_mb(pid)

        def one(k: int):
            if args.hostile and k % 2:
                name, body, params = hostile[(k // 2) % len(hostile)]
            else:
                name, body, params = "photo", photos[k % len(photos)], {}
            params = {**params, **({"explain": args.explain} if args.explain != "none" else {})}
            start = time.perf_counter()
            try:
                reply = httpx.post(f"{url}v1/analyze", params=params, timeout=120,
                                   files={"image": ("p.jpg", body, "image/jpeg")})
                return name, reply.status_code, reply.headers.get("Retry-After"), time.perf_counter() - start
            except httpx.HTTPError as err:
                return name, type(err).__name__, None, time.perf_counter() - start

        began = time.perf_counter()
        r = 0
        while (r < args.rounds) if not args.minutes else (time.perf_counter() - began < 60 * args.minutes):
            peak, stop = [base], threading.Event()
            sampler = threading.Thread(target=_sample, args=(pid, peak, stop), daemon=True)
            sampler.start()
            start = time.perf_counter()
            slow = args.slow if args.hostile else 0
            with ThreadPoolExecutor(args.clients + slow) as pool:
                stalled = [pool.submit(slow_client, url, 15.0) for _ in range(slow)]
                results = list(pool.map(one, range(r * args.clients, (r + 1) * args.clients)))
                stalled = [f.result() for f in stalled]
            stop.set()
            sampler.join()
            statuses = Counter(f"{name}: {status}" for name, status, _, _ in results) + Counter(stalled)
            missing_retry = sum(1 for _, status, retry, _ in results if status == 503 and not retry)
            rows.append({"round": r + 1, "minute": round((start - began) / 60, 2),
                         "seconds": round(time.perf_counter() - start, 2), "answers": dict(statuses),
                         "503_without_retry_after": missing_retry, "rss_peak_mb": round(max(peak), 1),
                         "rss_after_mb": round(rss_mb(pid), 1)})
            print(json.dumps(rows[-1]), flush=True)
            r += 1
        again = httpx.post(f"{url}v1/analyze", files={"image": ("p.jpg", photos[0], "image/jpeg")},
                           timeout=120).json()["faces"]
    finally:
        process.terminate()
        process.wait(30)
    total = sum((Counter(r["answers"]) for r in rows), Counter())
    print(json.dumps({"rounds": len(rows), "answers": dict(sorted(total.items())),
                      "503_without_retry_after": sum(r["503_without_retry_after"] for r in rows),
                      "rss_before_mb": round(base, 1), "rss_peak_mb": max(r["rss_peak_mb"] for r in rows),
                      "first_round_peak_mb": rows[0]["rss_peak_mb"], "last_round_peak_mb": rows[-1]["rss_peak_mb"],
                      "same_answer_after": again == reference}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
