"""Which model versions are loaded, found by polling each model's base path.

Mirrors TF Serving's file-system source: a version is a numeric folder under
the base path holding ``saved_model.pb``; the version policy (latest N, all,
or specific versions) picks which to serve; new versions load in the polling
thread and become available only once loaded (and warmed up), so the old
version keeps answering meanwhile; versions the policy drops are unloaded.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_pb2
from tensorflow_serving.config import model_server_config_pb2

log = logging.getLogger("serving.local")

State = get_model_status_pb2.ModelVersionStatus.State


class ServingError(Exception):
    """An error that goes back to the client with a gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Servable:
    """One loaded model version."""

    name: str
    version: int
    path: Path
    module: object
    signature_defs: dict[str, meta_graph_pb2.SignatureDef]
    unloaded: bool = False  # set when the registry lets it go (a request may still hold it)


@dataclass
class _Model:
    config: model_server_config_pb2.ModelConfig
    servables: dict[int, Servable] = field(default_factory=dict)
    # version -> (state, load error): one tuple replaced at once, so a status read never sees a state
    # beside another moment's error (LOADING with the last attempt's INTERNAL, say)
    status: dict[int, tuple[int, str]] = field(default_factory=dict)
    logged_errors: dict[int, str] = field(default_factory=dict)  # the last load error logged per version

    @property
    def states(self) -> dict[int, int]:
        return {v: state for v, (state, _) in self.status.items()}


def read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The SignatureDefs of a SavedModel's serving MetaGraph, exactly as stored (what TF Serving reports)."""
    saved = saved_model_pb2.SavedModel.FromString((path / "saved_model.pb").read_bytes())
    for meta_graph in saved.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    return dict(saved.meta_graphs[0].signature_def)


def on_disk_versions(base_path: Path) -> list[int]:
    if not base_path.is_dir():
        return []
    return sorted(int(p.name) for p in base_path.iterdir()
                  if p.name.isdigit() and (p / "saved_model.pb").is_file())


def wanted_versions(config: model_server_config_pb2.ModelConfig, found: list[int]) -> set[int]:
    """The versions the model's version policy serves out of those found."""
    policy = config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(found)
    if kind == "specific":
        return set(found) & set(policy.specific.versions)
    n = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions > 0 else 1
    return set(found[-n:])


class ModelRegistry:
    """Loads, serves and unloads model versions as their base paths change.

    Args:
        config: the models to serve.
        poll_seconds: how often base paths are scanned (TF Serving's
            ``--file_system_poll_wait_seconds``); 0 scans once at start.
        warmup: callable ``(servable) -> None`` run before a version becomes
            available (replays its warm-up requests).
    """

    def __init__(self, config: model_server_config_pb2.ModelServerConfig, poll_seconds: float = 1.0, warmup=None,
                 allow_labels_for_unavailable: bool = False):
        self._lock = threading.Lock()
        self._models: dict[str, _Model] = {}
        self.poll_seconds = poll_seconds
        self._warmup = warmup
        self.allow_labels_for_unavailable = allow_labels_for_unavailable
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Callables (servable) told of each version unloaded, so that what holds on to a version (the
        # server's batchers) lets it go: otherwise each swap would keep the old version's whole model in
        # memory (about 195 MB a swap for the shipped model, benchmarks.version_swaps).
        self.unload_listeners: list = []
        self.set_config(config, initial=True)

    def _unloaded(self, gone: list[Servable]) -> None:
        for servable in gone:
            servable.unloaded = True
            for listener in self.unload_listeners:
                listener(servable)

    def _check_labels(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """TF Serving's rule for a config update: a label already in use may only move to a version that
        is AVAILABLE; a new label may name an unavailable one only with
        ``--allow_version_labels_for_unavailable_models``. Raises ValueError (the old config stays)."""
        for model_config in config.model_config_list.config:
            model = self._models.get(model_config.name)
            states = model.states if model else {}
            old = dict(model.config.version_labels) if model else {}
            for label, version in model_config.version_labels.items():
                if states.get(version) == State.AVAILABLE or old.get(label) == version:
                    continue
                if label in old:
                    raise ValueError(f"model {model_config.name}: label {label!r} is in use (version {old[label]}) "
                                     f"and cannot move to version {version}, which is not available yet: add the "
                                     f"version first, wait until it is AVAILABLE, then move the label")
                if not self.allow_labels_for_unavailable:
                    raise ValueError(f"model {model_config.name}: new label {label!r} names version {version}, which "
                                     f"is not available (--allow_version_labels_for_unavailable_models allows it)")

    def set_config(self, config: model_server_config_pb2.ModelServerConfig, initial: bool = False) -> None:
        """Serves ``config`` from now on; a later update is refused (ValueError) when it breaks the label rule."""
        with self._lock:
            if not initial:
                self._check_labels(config)
            names = set()
            for model_config in config.model_config_list.config:
                names.add(model_config.name)
                if model_config.name in self._models:
                    self._models[model_config.name].config = model_config
                else:
                    self._models[model_config.name] = _Model(model_config)
            dropped: list[Servable] = []
            for gone in set(self._models) - names:
                dropped += self._models[gone].servables.values()
                del self._models[gone]
        self._unloaded(dropped)

    # -- polling -------------------------------------------------------------
    def discover(self) -> dict[str, tuple[_Model, set[int]]]:
        """Scans the base paths; each wanted version not loaded yet is marked START (as TF Serving
        reports a version it has found but not begun loading). Returns the wanted versions per model."""
        with self._lock:
            models = list(self._models.items())
        wanted_by_model = {}
        for name, model in models:
            wanted = wanted_versions(model.config, on_disk_versions(Path(model.config.base_path)))
            with self._lock:
                for version in wanted - set(model.servables):
                    if model.states.get(version) not in (State.LOADING, State.END):
                        model.status[version] = (State.START, "")
            wanted_by_model[name] = (model, wanted)
        return wanted_by_model

    def poll_once(self) -> None:
        """Loads wanted versions not yet loaded, then unloads versions no longer wanted."""
        for name, (model, wanted) in self.discover().items():
            for version in sorted(wanted - set(model.servables)):
                self._load(name, model, version)
            gone: list[Servable] = []
            with self._lock:
                # Availability preserving, as TF Serving: an old version goes only once a wanted one serves.
                if not wanted & set(model.servables):
                    continue
                for version in set(model.servables) - wanted:
                    model.status[version] = (State.END, "")
                    gone.append(model.servables.pop(version))
                    log.info("unloaded %s version %d", name, version)
            self._unloaded(gone)

    def _load(self, name: str, model: _Model, version: int) -> None:
        path = Path(model.config.base_path) / str(version)
        with self._lock:
            model.status[version] = (State.LOADING, "")
        try:
            servable = Servable(name, version, path, tf.saved_model.load(str(path)), read_signature_defs(path))
            if self._warmup:
                self._warmup(servable)
        except Exception as err:  # a broken or half-copied version: retried at the next poll
            with self._lock:
                model.status[version] = (State.END, str(err))
                if model.logged_errors.get(version) != str(err):
                    log.error("cannot load %s version %d from %s: %s", name, version, path, err)
                model.logged_errors[version] = str(err)
            return
        with self._lock:
            model.servables[version] = servable
            model.status[version] = (State.AVAILABLE, "")
            model.logged_errors.pop(version, None)
        log.info("loaded %s version %d from %s", name, version, path)

    def start(self) -> None:
        """Scans once now, then keeps polling in a daemon thread."""
        self.poll_once()
        if self.poll_seconds > 0:
            self._thread = threading.Thread(target=self._loop, name="model-poll", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # never let one bad scan end polling
                log.exception("polling the model base paths failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    # -- lookups ---------------------------------------------------------------
    def resolve(self, spec: model_pb2.ModelSpec) -> Servable:
        """The servable a request's ModelSpec names, or a ServingError with TF Serving's code."""
        if not spec.name:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec name")
        with self._lock:
            model = self._models.get(spec.name)
            if model is None:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})")
            choice = spec.WhichOneof("version_choice")
            if choice == "version_label":
                label = spec.version_label
                if label not in model.config.version_labels:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT, f"Unrecognized servable version label: {label}"
                    )
                version = model.config.version_labels[label]
            elif choice == "version":
                version = spec.version.value
            else:
                if not model.servables:  # TF Serving's answer while nothing is loaded (yet)
                    raise ServingError(
                        grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({spec.name})"
                    )
                return model.servables[max(model.servables)]
            servable = model.servables.get(version)
            if servable is None:
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Specific({spec.name}, {version})"
                )
            return servable

    def version_states(self, name: str, version: int | None = None) -> list[tuple[int, int, str]]:
        """(version, state, error message) of a model's versions, newest first."""
        with self._lock:
            model = self._models.get(name)
            if model is None:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
            status = dict(model.status)
        states = {v: state for v, (state, _) in status.items()}
        if not states:  # configured, but no version seen under its base path: as TF Serving
            raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND, f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        return [(v, s, status[v][1]) for v, s in sorted(states.items(), reverse=True)]

    def wait_until_available(self, name: str, timeout: float = 60.0) -> bool:
        """Polls until ``name`` has an available version (for tests and start-up scripts)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._models.get(name) and self._models[name].servables:
                    return True
            time.sleep(0.05)
        return False
