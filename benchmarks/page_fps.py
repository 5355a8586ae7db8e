"""Frames per second the browser page analyses from a camera, measured in the browser.

Starts ``python -m clients.service`` (embedded model server, the shipped models) as a user would, opens
its page in headless Chromium whose fake camera plays FER2013 test faces in 640x480 scenes (one face at a
time), starts the camera and counts the frames the page draws with their analysis over ``--seconds``
after a warm-up. Prints the page's frames per second and the service's own time per frame by stage::

    python -m benchmarks.page_fps --data ../shared/data/fer2013 --seconds 30
    python -m benchmarks.page_fps --data ../shared/data/fer2013 --no-explain --model gimefive-ferplus
    python -m benchmarks.page_fps --data ../shared/data/fer2013 --screenshot docs/service-page.png
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.fakecam import chromium_args, chromium_path, fer2013_test_faces, scene, write_y4m


def start_service(port: int = 0) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([sys.executable, "-m", "clients.service", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 600
    for line in process.stdout:
        found = re.search(r"on (http://[0-9.]+:\d+/)", line)
        if found:
            return process, found.group(1)
        if time.monotonic() > deadline:
            break
    process.kill()
    raise RuntimeError("the service did not start")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.page_fps", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="FER2013 root (its test faces feed the fake camera)")
    p.add_argument("--seconds", type=float, default=30.0, help="measured seconds after the warm-up")
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--model", default="gimefive-fer2013")
    p.add_argument("--no-explain", action="store_true", help="analyse without explanation maps")
    p.add_argument("--screenshot", default=None, help="also save a screenshot of the page here (PNG)")
    args = p.parse_args(argv)
    browser_path = chromium_path()
    if browser_path is None:
        p.error("no Chromium (as root: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    faces = [f for label in ("happiness", "surprise", "sadness") for _, f in
             fer2013_test_faces(Path(args.data), label, 2)]
    frames = [scene(face, seed=k) for k, face in enumerate(faces) for _ in range(60)]  # 2 s a face at 30 frames/s
    process, url = start_service()
    try:
        with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
            y4m = write_y4m(Path(tmp) / "camera.y4m", frames)
            browser = pw.chromium.launch(executable_path=browser_path, args=chromium_args(y4m), headless=True)
            page = browser.new_page(viewport={"width": 1100, "height": 640})
            page.goto(url)
            page.wait_for_function("window.fer.models.length > 0")
            page.select_option("#model", args.model)
            if args.no_explain:
                page.uncheck("#explain")
            page.click("#camera")
            page.wait_for_function("window.fer.frames > 0", timeout=120_000)
            time.sleep(args.warmup)
            timings, seen = [], set()
            start_frames, start = page.evaluate("window.fer.frames"), time.perf_counter()
            while time.perf_counter() - start < args.seconds:
                last = page.evaluate("window.fer.last")
                if last and last["frame"] not in seen:
                    seen.add(last["frame"])
                    timings.append(last["timing_ms"])
                time.sleep(0.03)
            done, elapsed = page.evaluate("window.fer.frames") - start_frames, time.perf_counter() - start
            if args.screenshot:
                page.screenshot(path=args.screenshot)
            page.click("#stop")
            browser.close()
    finally:
        process.terminate()
        process.wait(30)
    stages = sorted({k for t in timings for k in t})
    report = {
        "model": args.model, "explain": not args.no_explain, "seconds": round(elapsed, 1), "frames": done,
        "frames_per_second": round(done / elapsed, 2),
        "service_ms_per_frame": {s: round(float(np.mean([t.get(s, 0.0) for t in timings])), 1) for s in stages},
        "frames_sampled": len(timings),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
