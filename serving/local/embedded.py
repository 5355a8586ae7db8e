"""The local server started inside another program (the video client, the analysis service, the
benchmarks): on a free loopback port, serving SavedModel base paths, answering once they are loaded."""

from __future__ import annotations

from pathlib import Path

from serving.config import models_config
from serving.local.server import LocalServer


def start_embedded_server(model: str | dict[str, str], base_path: str | None = None, batching=None,
                          timeout: float = 120.0) -> LocalServer:
    """Serves ``base_path`` as ``model``, or each ``{name: base_path}`` of a dict, on a free loopback port.

    Raises FileNotFoundError for a base path without numbered versions, ValueError for one that does not load.
    """
    models = dict(model) if isinstance(model, dict) else {model: base_path}
    for name, base in models.items():
        if base is None or not any(p.name.isdigit() for p in Path(base).glob("*")):
            raise FileNotFoundError(f"no SavedModel versions under {base} (model {name}): train one (make demo) "
                                    "or pass --server")
    config = models_config({name: str(Path(base).resolve()) for name, base in models.items()})
    server = LocalServer(config, port=0, poll_seconds=0, batching=batching).start()
    for name, base in models.items():
        if not server.registry.wait_until_available(name, timeout=timeout):
            server.stop(grace=0)
            raise ValueError(f"the embedded server could not load {base} (model {name})")
    return server
