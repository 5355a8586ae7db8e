"""``python -m clients.service``: the analysis service and its browser page.

Examples::

    python -m clients.service                                  # http://127.0.0.1:8080, both shipped models
    python -m clients.service --port 9000 --models gimefive-ferplus
    python -m clients.service --server 127.0.0.1:8500 --models gimefive    # models served by TF Serving
    python -m clients.service --backend litert --models edge/fer2013-int8.tflite   # no model server at all

``POST /v1/analyze`` takes a photo (multipart field ``image``, JSON ``{"image": "<base64>"}`` or the raw
bytes) and returns each face's box, keypoints, probabilities, label, track (with ``stream=ID``) and, with
``explain=METHOD``, its explanation map and region shares; ``/`` is a page for a camera or a dropped
photo; ``/openapi.json`` describes the API. By default the shipped models are served by an embedded
local server (exported once to ~/.cache/fer-keras); ``--server`` uses a running TF Serving instead.
"""

from __future__ import annotations

import argparse
import sys

from clients.settings import STREAM_DETECT_EVERY, AnalyzerConfig
from fer_keras.detection import DETECTORS

D = AnalyzerConfig()
SHIPPED = ("gimefive-fer2013", "gimefive-ferplus")


def build_parser() -> argparse.ArgumentParser:
    from clients.service.app import Limits

    L = Limits()
    p = argparse.ArgumentParser(prog="python -m clients.service", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8080, help="HTTP port (0: any free port). Default: %(default)s")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind; 0.0.0.0 exposes the service to the network. Default: %(default)s")
    p.add_argument("--backend", choices=("server", "litert"), default="server",
                   help="server: a model server (embedded, or --server); litert: LiteRT files on this machine "
                        "(--models FILE.tflite,...; they carry no explanations). Default: %(default)s")
    p.add_argument("--server", default=None,
                   help="TF Serving gRPC address host:port. Default: start an embedded local server")
    p.add_argument("--models", default=None,
                   help="comma-separated models, the first the default. Embedded: shipped models "
                        f"(default {','.join(SHIPPED)}); with --server: names served there (default gimefive); "
                        "with --backend litert: .tflite files (named by their stems)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call deadline to the model server, seconds")
    p.add_argument("--detector", choices=[d for d in DETECTORS if d != "none"], default=D.detector,
                   help="face detector. Default: %(default)s")
    p.add_argument("--detect-every", type=int, default=STREAM_DETECT_EVERY,
                   help="in a stream, detect faces every k frames and track them in between (clients.settings."
                        "STREAM_DETECT_EVERY). Default: %(default)s")
    p.add_argument("--explain-every", type=int, default=D.explain_every,
                   help="in a stream, refresh each face's explanation every n frames. Default: %(default)s")
    p.add_argument("--smoothing", type=float, default=D.smoothing,
                   help="in a stream, weight of the newest frame in each face's moving average. Default: %(default)s")
    p.add_argument("--max-bytes", type=int, default=L.max_bytes, help="largest request body. Default: %(default)s")
    p.add_argument("--max-pixels", type=int, default=L.max_pixels,
                   help="largest image (width x height, from its header). Default: %(default)s")
    p.add_argument("--workers", type=int, default=L.workers, help="analyses at once. Default: %(default)s")
    p.add_argument("--queue", type=int, default=L.queue,
                   help="analyses waiting for a worker before the service answers 503. Default: %(default)s")
    p.add_argument("--stream-idle", type=float, default=120.0,
                   help="seconds after which an idle stream is forgotten. Default: %(default)s")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's native log lines and each request")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.backend == "litert" and (args.server or not args.models):
        parser.error("--backend litert needs --models FILE.tflite[,FILE.tflite] and no --server")
    names = [n.strip() for n in (args.models or (",".join(SHIPPED) if args.server is None else "gimefive")).split(",")]
    if not all(names) or len(set(names)) != len(names):
        parser.error(f"--models must name distinct models; got {args.models!r}")
    if args.backend == "litert":
        if not all(n.endswith(".tflite") for n in names):
            parser.error(f"--backend litert takes .tflite files in --models; got {args.models!r}")
    elif args.server is None:
        from fer_keras.pretrained import available

        unknown = [n for n in names if n not in available()]
        if unknown:
            parser.error(f"not shipped: {', '.join(unknown)}; shipped: {', '.join(available())} "
                         "(use --server for models served elsewhere)")
    from clients.service.app import Limits

    try:
        limits = Limits(max_bytes=args.max_bytes, max_pixels=args.max_pixels, workers=args.workers, queue=args.queue)
        config = AnalyzerConfig(detector=args.detector, detect_every=args.detect_every,
                                explain_every=args.explain_every, smoothing=args.smoothing)
    except ValueError as err:
        parser.error(str(err))
    from fer_keras.quiet import load_tensorflow_quietly, native_stderr_to_file

    with native_stderr_to_file(not args.verbose):
        load_tensorflow_quietly(False)
        import uvicorn

        from clients.client import ClientError, EmotionClient
        from clients.service.analyst import Analyst
        from clients.service.app import create_app
        from serving.local.embedded import start_embedded_server

    server = None
    if args.server is None and args.backend == "server":
        print(f"loading {', '.join(names)} into an embedded model server ...", file=sys.stderr, flush=True)
    try:
        with native_stderr_to_file(not args.verbose, (ClientError, ValueError, FileNotFoundError)):
            address = args.server
            if args.backend == "litert":
                from clients.edge import LiteRTClient

                edge = [LiteRTClient(n) for n in names]
                clients, address = {c.model: c for c in edge}, "LiteRT files on this machine"
                if len(clients) != len(edge):
                    raise ValueError(f"--models: two files share a name: {args.models}")
            elif address is None:
                from fer_keras.exporting import serving_base

                server = start_embedded_server({n: str(serving_base(n)) for n in names})
                address = server.address
            if args.backend == "server":
                clients = {n: EmotionClient(address, n, timeout=args.timeout) for n in names}
            analyst = Analyst(clients, config, idle_seconds=args.stream_idle)
        app = create_app(analyst, limits)
        uv = uvicorn.Config(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
                            timeout_keep_alive=5, limit_concurrency=4 * (limits.workers + limits.queue) + 16)
        import socket

        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        host, port = sock.getsockname()[:2]
        print(f"fer-keras analysis service on http://{host}:{port}/ (API: /v1/analyze, /openapi.json); "
              f"models {', '.join(clients)} at {address}", flush=True)
        uvicorn.Server(uv).run(sockets=[sock])
    except (ClientError, ValueError, FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if server is not None:
            server.stop(grace=1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
