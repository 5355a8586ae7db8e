"""``python -m serving.local``: serve SavedModels over TF Serving's gRPC API on this machine.

The flags are ``tensorflow_model_server``'s where they apply::

    python -m serving.local --port 8500 --model_name gimefive --model_base_path models/gimefive
    python -m serving.local --model_config_file serving/models.config --models_root models

It binds to 127.0.0.1 unless --host says otherwise, picks up new version
folders while serving, and stops cleanly on SIGTERM or Ctrl-C. Production
uses the tensorflow/serving container (serving/README.md).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m serving.local", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port). Default: %(default)s")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind; 0.0.0.0 exposes the server to the network. Default: %(default)s")
    p.add_argument("--model_name", default="gimefive", help="model name with --model_base_path. Default: %(default)s")
    p.add_argument("--model_base_path", default=None, help="folder holding numbered SavedModel versions of one model")
    p.add_argument("--model_config_file", default=None, help="a models.config (ModelServerConfig text proto)")
    p.add_argument("--models_root", default=None,
                   help="with --model_config_file: local folder standing for the container's /models in base paths")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="how often base paths are scanned for new versions (0: once). Default: %(default)s")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                   help="how often the config file is re-read (0: never). Default: %(default)s")
    p.add_argument("--max_message_bytes", type=int, default=256 * 1024 * 1024,
                   help="largest gRPC message accepted or sent. Default: %(default)s")
    p.add_argument("--max_workers", type=int, default=16, help="request threads. Default: %(default)s")
    p.add_argument("--enable_batching", action="store_true",
                   help="batch concurrent requests on the server (TF Serving's flag)")
    p.add_argument("--batching_parameters_file", default=None,
                   help="BatchingParameters text proto (serving/batching.config); implies --enable_batching")
    p.add_argument("--max_batch", type=int, default=4096,
                   help="largest batch one Predict call may carry (INVALID_ARGUMENT above). Default: %(default)s")
    p.add_argument("--allow_version_labels_for_unavailable_models", action="store_true",
                   help="a config update may point a new label at a version not yet available (a label in use "
                        "never moves to one)")
    p.add_argument("--rest_api_port", type=int, default=8501,
                   help="port of TF Serving's REST API (POST /v1/models/NAME:predict, GET /v1/models/NAME[/metadata]) "
                        "on --host; 0 turns it off. Default: %(default)s")
    p.add_argument("--ssl_config_file", default=None,
                   help="TF Serving's SSLConfig text proto (server_key, server_cert, custom_ca, client_verify): "
                        "serve gRPC over TLS")
    p.add_argument("--max_request_bytes", type=int, default=64 * 1024 * 1024,
                   help="largest decoded request tensor in bytes (RESOURCE_EXHAUSTED above). Default: %(default)s")
    p.add_argument("--max_inflight_bytes", type=int, default=256 * 1024 * 1024,
                   help="bytes all requests in flight may hold, each counted at twice its tensors' bytes "
                        "(RESOURCE_EXHAUSTED after 2 s without room). Default: %(default)s")
    return p


def load_config(args):
    from serving.config import read_model_server_config, single_model_config

    if args.model_config_file:
        config = read_model_server_config(args.model_config_file)
        if args.models_root:
            root = str(Path(args.models_root).resolve())
            for model in config.model_config_list.config:
                if model.base_path == "/models" or model.base_path.startswith("/models/"):
                    model.base_path = root + model.base_path[len("/models"):]
        return config
    if not args.model_base_path:
        raise ValueError("give --model_base_path (one model) or --model_config_file")
    return single_model_config(args.model_name, str(Path(args.model_base_path).resolve()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from serving.local.server import LocalServer

    try:
        config = load_config(args)
        batching = None
        if args.enable_batching or args.batching_parameters_file:
            from serving.config import read_batching_parameters
            from serving.local.batching import BatchingOptions

            batching = (BatchingOptions.from_parameters(read_batching_parameters(args.batching_parameters_file))
                        if args.batching_parameters_file else BatchingOptions())
        ssl_config = None
        if args.ssl_config_file:
            from serving.config import read_ssl_config

            ssl_config = read_ssl_config(args.ssl_config_file)
        server = LocalServer(config, host=args.host, port=args.port, poll_seconds=args.file_system_poll_wait_seconds,
                             max_workers=args.max_workers, max_message_bytes=args.max_message_bytes,
                             max_batch=args.max_batch, batching=batching, max_request_bytes=args.max_request_bytes,
                             max_inflight_bytes=args.max_inflight_bytes, ssl_config=ssl_config,
                             rest_port=args.rest_api_port or None,
                             allow_labels_for_unavailable=args.allow_version_labels_for_unavailable_models)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stopping = threading.Event()

    def shut_down(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, shut_down)
    signal.signal(signal.SIGINT, shut_down)
    server.start()
    for model in config.model_config_list.config:
        logging.info("serving %s from %s", model.name, model.base_path)
        if not Path(model.base_path).is_dir():
            logging.warning("%s does not exist (yet): %s answers FAILED_PRECONDITION until a version appears there",
                            model.base_path, model.name)
    logging.info("gRPC API listening on %s", server.address)
    if server.rest is not None:
        logging.info("REST API listening on %s:%d", server.rest.host, server.rest.port)
    mtime = Path(args.model_config_file).stat().st_mtime if args.model_config_file else None
    while not stopping.wait(args.model_config_file_poll_wait_seconds or 1.0):
        if args.model_config_file and args.model_config_file_poll_wait_seconds > 0:
            current = Path(args.model_config_file).stat().st_mtime
            if current != mtime:
                mtime = current
                try:
                    server.registry.set_config(load_config(args))
                    logging.info("reloaded %s", args.model_config_file)
                except ValueError as err:
                    logging.error("kept the old config: %s", err)
    logging.info("shutting down")
    server.stop(grace=5.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
