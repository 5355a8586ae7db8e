"""Multi-worker training on the JAX backend with Keras 3's distribution API.

Every process runs the same ``python -m fer_keras.train --strategy multi-worker`` command line. The
cluster comes from Keras's own variables (``KERAS_DISTRIBUTION_JOB_ADDRESSES``, ``..._NUM_PROCESSES``,
``..._PROCESS_ID``) or, where those are unset, from ``TF_CONFIG`` (chief first, then the workers), so
one manifest form serves both. Process 0's address is the coordinator: JAX's coordination service
listens on its port, this module's watch on the port after it.

The watch is a plain TCP channel beside JAX's, because JAX alone ends a broken cluster with a C++
check failure and a page of logs (measured with jax 0.10.2 on two local processes: a process that
never comes aborts the others at ``initialization_timeout`` with DEADLINE_EXCEEDED on RegisterTask;
one that dies mid-fit gives the others a Gloo "Connection closed by peer" error, then an abort when
the shutdown barrier times out). With the watch, every process first joins process 0 within
``FER_KERAS_CLUSTER_TIMEOUT`` seconds (else one clear error names whom it waited for), the processes
check that they run the same run on the same data (:meth:`Watch.agree`), and while they train each
beats every two seconds: a process that closes its connection, says it failed, or falls silent for
``FER_KERAS_WORKER_TIMEOUT`` seconds stops every other with one line naming it (status 1).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

# How long the processes wait for each other to join, and for a silent process before giving up on it.
CLUSTER_TIMEOUT_S = 300.0
WORKER_TIMEOUT_S = 60.0
ENV_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "KERAS_DISTRIBUTION_PROCESS_ID")
_EXAMPLE = ("KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:12345,host1:12345 KERAS_DISTRIBUTION_NUM_PROCESSES=2 "
            "KERAS_DISTRIBUTION_PROCESS_ID=0 (1 on host1)")
TENSORFLOW_ERROR = (
    "--strategy multi-worker trains with Keras 3's distribution API on the JAX backend: run the same command "
    "with KERAS_BACKEND=jax on every machine (README \"More than one machine\"). On TensorFlow, Keras 3's fit "
    "cannot take a MultiWorkerMirroredStrategy dataset (it hands PerReplica values to the model; "
    "keras-team/keras#20585); --strategy mirrored trains on one machine's GPUs")


class ClusterError(RuntimeError):
    """The cluster is misdescribed, never formed, or lost a process."""


def _split_address(address: str, what: str) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65535:
        raise ClusterError(f"{what}: {address!r} is not host:port (a port below 65535: the watch uses the next one)")
    return host, int(port)


@dataclass(frozen=True)
class Cluster:
    """The processes of a run: their addresses (only process 0's is used), how many, and which one this is."""

    addresses: tuple[str, ...]
    num_processes: int
    process_id: int
    source: str  # where it was read: "KERAS_DISTRIBUTION_*" or "TF_CONFIG"

    @property
    def coordinator(self) -> str:
        return self.addresses[0]

    @property
    def watch_address(self) -> tuple[str, int]:
        host, port = _split_address(self.coordinator, self.source)
        return host, port + 1

    @property
    def is_chief(self) -> bool:
        return self.process_id == 0


def check_tf_config(text: str | None, *, check_port: bool = True) -> dict:
    """The ``TF_CONFIG`` of a multi-worker run, checked: JSON with ``cluster`` (lists of ``host:port``
    per task type) and ``task`` (a type of the cluster and an index within it), and (``check_port``)
    this task's own port free to listen on. One clear :class:`ClusterError` for anything else."""
    if not text:
        example = '{"cluster": {"worker": ["host0:12345", "host1:12345"]}, "task": {"type": "worker", "index": 0}}'
        raise ClusterError("--strategy multi-worker needs the cluster: the KERAS_DISTRIBUTION_* variables "
                           f"({_EXAMPLE}) or the TF_CONFIG environment variable, e.g. {example}")
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ClusterError(f"TF_CONFIG is not JSON ({err}): {text[:200]}") from None
    cluster, task = (config.get("cluster"), config.get("task")) if isinstance(config, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not all(
            isinstance(v, list) and v and all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in v)
            for v in cluster.values()):
        raise ClusterError(f"TF_CONFIG's cluster must map task types to lists of host:port; got {cluster!r}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ClusterError(f"TF_CONFIG's task must name a type of the cluster ({', '.join(cluster)}); got {task!r}")
    index = task.get("index")
    members = cluster[task["type"]]
    if not isinstance(index, int) or not 0 <= index < len(members):
        raise ClusterError(f"TF_CONFIG's task index {index!r} is outside its {len(members)} {task['type']} addresses")
    if check_port:
        _check_listenable(members[index], f"this task's address {members[index]} (TF_CONFIG {task['type']} {index})")
    return config


def _check_listenable(address: str, what: str, count: int = 1) -> None:
    port = _split_address(address, what)[1]
    for p in range(port, port + count):
        with socket.socket() as probe:
            try:
                probe.bind(("", p))
            except OSError as err:
                raise ClusterError(f"{what}: port {p} cannot be listened on ({err.strerror or err}); "
                                   "is another run using it?") from None


def _int_variable(environ, name: str) -> int:
    text = environ.get(name, "")
    try:
        return int(text)
    except ValueError:
        raise ClusterError(f"{name} must be a whole number; got {text!r}") from None


def cluster_from_env(environ=None, *, check_ports: bool = True) -> Cluster:
    """The cluster from ``KERAS_DISTRIBUTION_*`` or, where none of those is set, from ``TF_CONFIG``.

    ``TF_CONFIG``'s chief (if any) becomes process 0 and its workers follow in order, so the manifest
    that builds ``TF_CONFIG`` from a pod's index serves both backends. Process 0's two ports (JAX's
    coordinator and the watch) are checked free (``check_ports``). One :class:`ClusterError` for
    anything wrong."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in ENV_VARIABLES):
        missing = [n for n in ENV_VARIABLES if not environ.get(n)]
        if "KERAS_DISTRIBUTION_JOB_ADDRESSES" in missing or "KERAS_DISTRIBUTION_PROCESS_ID" in missing:
            raise ClusterError(f"--strategy multi-worker: {', '.join(missing)} unset; set all three, e.g. {_EXAMPLE}")
        addresses = tuple(a.strip() for a in environ["KERAS_DISTRIBUTION_JOB_ADDRESSES"].split(",") if a.strip())
        for address in addresses:
            _split_address(address, "KERAS_DISTRIBUTION_JOB_ADDRESSES")
        count = (_int_variable(environ, "KERAS_DISTRIBUTION_NUM_PROCESSES")
                 if environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") else len(addresses))
        if count < 1 or (len(addresses) > 1 and len(addresses) != count):
            raise ClusterError(f"KERAS_DISTRIBUTION_NUM_PROCESSES is {count} but KERAS_DISTRIBUTION_JOB_ADDRESSES "
                               f"lists {len(addresses)} addresses (give one per process, or only process 0's)")
        if count == 1 and len(addresses) == 1 and not environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES"):
            raise ClusterError("KERAS_DISTRIBUTION_NUM_PROCESSES is unset and KERAS_DISTRIBUTION_JOB_ADDRESSES "
                               "lists only process 0: say how many processes there are")
        process_id = _int_variable(environ, "KERAS_DISTRIBUTION_PROCESS_ID")
        source = "KERAS_DISTRIBUTION_*"
    else:
        config = check_tf_config(environ.get("TF_CONFIG"), check_port=False)
        other = sorted(set(config["cluster"]) - {"chief", "worker"})
        if other:
            raise ClusterError(f"TF_CONFIG's task types {', '.join(other)} do not train on JAX: list the processes "
                               "as chief and/or worker")
        chiefs, workers = config["cluster"].get("chief", []), config["cluster"].get("worker", [])
        addresses, count = tuple(chiefs + workers), len(chiefs) + len(workers)
        task = config["task"]
        process_id = task["index"] + (len(chiefs) if task["type"] == "worker" else 0)
        source = "TF_CONFIG"
    if not 0 <= process_id < count:
        raise ClusterError(f"process {process_id} is outside a cluster of {count} processes ({source})")
    cluster = Cluster(addresses, count, process_id, source)
    if check_ports and cluster.is_chief:
        _check_listenable(cluster.coordinator, f"process 0's address {cluster.coordinator} ({source})", count=2)
    return cluster


def weights_digest(model) -> str:
    """A short SHA-256 of a model's weights, for checking that every process holds the same model."""
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:16]


class _Peer:
    def __init__(self, process_id: int, sock: socket.socket, reader):
        self.process_id, self.sock, self.reader = process_id, sock, reader
        self.last_seen = time.monotonic()
        self.said_bye = False
        self.agreed: dict[str, object] = {}


class Watch:
    """The processes of one run, joined and watched over TCP beside JAX's own channels (module doc).

    Args:
        cluster: the processes.
        join_timeout: seconds every process has to join process 0.
        silence: seconds without a word after which a process counts as gone.
        on_lost: called with the message when another process is gone or failed; the default
            prints it as this process's one error and exits (status 1), since nothing else ends a
            process whose JAX runtime waits on a peer that is gone.
    """

    def __init__(self, cluster: Cluster, join_timeout: float = CLUSTER_TIMEOUT_S, silence: float = WORKER_TIMEOUT_S,
                 on_lost=None):
        self.cluster, self.join_timeout, self.silence = cluster, join_timeout, silence
        self.on_lost = on_lost or _print_and_exit
        self._peers: dict[int, _Peer] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._finished = False
        self._dying = False
        self._why = ""
        self._distribution = None

    # -- forming the cluster -------------------------------------------------------------------
    def join(self) -> None:
        """Meets every other process (:meth:`meet`), then starts JAX's distributed runtime with the
        Gloo CPU collectives."""
        self.meet()
        c = self.cluster
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=c.coordinator, num_processes=c.num_processes, process_id=c.process_id,
            initialization_timeout=max(int(self.join_timeout), 1),
            # JAX's own heartbeat check aborts the process; the watch's, shorter, says who went first.
            heartbeat_timeout_seconds=int(self.silence) + 60,
        )
        global _joined
        _joined = self

    def meet(self) -> None:
        """Meets every other process over the watch's channel within ``join_timeout`` (one clear
        :class:`ClusterError` naming whom it waited for), then beats until :meth:`finish`."""
        c = self.cluster
        others = [i for i in range(c.num_processes) if i != c.process_id]
        print(f"multi-worker: process {c.process_id} of {c.num_processes} ({c.source}); joining "
              f"{'processes ' + ', '.join(map(str, others)) if c.is_chief else 'process 0 at ' + c.coordinator} "
              f"(at most {self.join_timeout:.0f} s, FER_KERAS_CLUSTER_TIMEOUT)", file=sys.stderr, flush=True)
        if c.num_processes > 1:
            self._gather() if c.is_chief else self._reach()
        threading.Thread(target=self._beat, name="multiworker-beat", daemon=True).start()

    def _gather(self) -> None:
        host, port = self.cluster.watch_address
        server = socket.create_server(("", port), reuse_port=False)
        deadline = time.monotonic() + self.join_timeout
        try:
            while len(self._peers) < self.cluster.num_processes - 1:
                server.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    sock, _ = server.accept()
                except TimeoutError:
                    missing = sorted(set(range(1, self.cluster.num_processes)) - set(self._peers))
                    why = (f"multi-worker: process{'es' if len(missing) > 1 else ''} {', '.join(map(str, missing))} "
                           f"never joined process 0 at {host}:{port} within {self.join_timeout:.0f} s "
                           "(FER_KERAS_CLUSTER_TIMEOUT); start the same command on every machine, or check the "
                           "addresses and that the port after the coordinator's is reachable")
                    for peer in self._peers.values():  # those that came are told why they stop
                        self._tell(peer, {"op": "fail", "why": why})
                    raise ClusterError(why) from None
                sock.settimeout(max(deadline - time.monotonic(), 0.01))
                reader = sock.makefile("r", encoding="utf-8")
                try:
                    hello = json.loads(reader.readline() or "{}")
                except (OSError, ValueError):
                    sock.close()
                    continue
                pid = hello.get("process_id")
                if hello.get("op") != "hello" or hello.get("num_processes") != self.cluster.num_processes or \
                        not isinstance(pid, int) or not 0 < pid < self.cluster.num_processes or pid in self._peers:
                    why = (f"multi-worker: process 0 expects {self.cluster.num_processes} processes with ids 1.."
                           f"{self.cluster.num_processes - 1} each once; a process said {hello}")
                    for other in (sock, *(p.sock for p in self._peers.values())):
                        with contextlib.suppress(OSError):
                            self._send(other, {"op": "fail", "why": why})
                    sock.close()
                    raise ClusterError(why)
                sock.settimeout(None)
                self._peers[pid] = _Peer(pid, sock, reader)
        finally:
            server.close()
        for peer in self._peers.values():
            self._send(peer.sock, {"op": "welcome"})
            threading.Thread(target=self._read, args=(peer,), name=f"multiworker-{peer.process_id}",
                             daemon=True).start()

    def _reach(self) -> None:
        host, port = self.cluster.watch_address
        deadline = time.monotonic() + self.join_timeout
        last = "no answer"
        while True:
            try:
                sock = socket.create_connection((host, port), timeout=max(min(5.0, deadline - time.monotonic()), 0.1))
                self._send(sock, {"op": "hello", "process_id": self.cluster.process_id,
                                  "num_processes": self.cluster.num_processes})
                # Process 0 answers within its own bound (welcome, or why it gives up): a little grace.
                sock.settimeout(max(deadline - time.monotonic(), 0.1) + 10.0)
                reader = sock.makefile("r", encoding="utf-8")
                answer = json.loads(reader.readline() or "{}")
                break
            except (OSError, ValueError) as err:
                last = str(err) or type(err).__name__
                if time.monotonic() >= deadline:
                    raise ClusterError(f"multi-worker: process {self.cluster.process_id} could not join process 0 at "
                                       f"{host}:{port} within {self.join_timeout:.0f} s (FER_KERAS_CLUSTER_TIMEOUT; "
                                       f"last: {last}); is process 0 started, and its address right?") from None
                time.sleep(0.5)
        if answer.get("op") != "welcome":
            sock.close()
            raise ClusterError(answer.get("why") or f"multi-worker: process 0 closed the connection before all "
                               f"processes had joined (process {self.cluster.process_id} waiting)")
        sock.settimeout(None)
        peer = self._peers[0] = _Peer(0, sock, reader)
        threading.Thread(target=self._read, args=(peer,), name="multiworker-0", daemon=True).start()

    # -- during the run --------------------------------------------------------------------------
    @staticmethod
    def _send(sock: socket.socket, message: dict) -> None:
        sock.sendall((json.dumps(message) + "\n").encode())

    def _tell(self, peer: _Peer, message: dict) -> bool:
        try:
            self._send(peer.sock, message)
            return True
        except OSError:
            return False

    def _read(self, peer: _Peer) -> None:
        while True:
            try:
                line = peer.reader.readline()
            except OSError:
                line = ""
            if not line:
                if not (peer.said_bye or self._finished):
                    self._lost(peer, "closed its connection")
                return
            try:
                message = _message(line)
            except ValueError as err:
                # A reader thread that died here would leave the peer looking silent, and be named for it.
                self._lost(peer, f"sent a message this process cannot read ({err}: {line.strip()[:120]!r}; is every "
                           "process running the same fer-keras version?)")
                return
            with self._changed:
                peer.last_seen = time.monotonic()
                op = message.get("op")
                if op == "bye":
                    peer.said_bye = True
                elif op in ("agree", "agreed"):
                    peer.agreed[message["what"]] = message
                self._changed.notify_all()
            if op == "fail" and not self._finished:
                who = f"process {message.get('process_id', peer.process_id)}"
                self._die(message["why"] if message.get("relayed") else f"multi-worker: {who} stopped: "
                          f"{message['why']}")

    def _beat(self) -> None:
        interval = min(2.0, self.silence / 5)
        while not (self._finished or self._dying):
            time.sleep(interval)
            now = time.monotonic()
            for peer in list(self._peers.values()):
                if peer.said_bye:
                    continue
                self._tell(peer, {"op": "beat"})
                if now - peer.last_seen > self.silence and not self._finished:
                    self._lost(peer, f"sent nothing for {self.silence:.0f} s (FER_KERAS_WORKER_TIMEOUT)")

    def _lost(self, peer: _Peer, how: str) -> None:
        address = self.cluster.coordinator if peer.process_id == 0 else f"process {peer.process_id}"
        name = f"process 0 ({address})" if peer.process_id == 0 else address
        self._die(f"multi-worker: {name} {how} before the run finished, so this process stops too; restart every "
                  "process with --resume to continue after the last completed epoch")

    def _die(self, why: str) -> None:
        """Tells every other process why, then ``on_lost(why)`` (once)."""
        with self._changed:
            if self._dying:
                return
            self._dying, self._why = True, why
            self._changed.notify_all()  # an agree() waiting on the others stops with this reason
        for peer in list(self._peers.values()):
            self._tell(peer, {"op": "fail", "why": why, "relayed": True})
        self.on_lost(why)

    def collective_failed(self, err: BaseException) -> None:
        """A collective raised (a peer went away mid-step): waits briefly for the watch to name the
        peer, else stops with the collective's own message."""
        time.sleep(min(10.0, self.silence))  # the watch usually exits first, naming the process gone
        self._die(f"multi-worker: a collective operation failed ({str(err).splitlines()[0][:300]}); "
                  "restart every process with --resume")

    def agree(self, what: str, value, hint: str = "") -> None:
        """Every process passes its ``value``; all go on if they are equal, else every process raises
        one :class:`ClusterError` naming the processes' values (and ``hint``). Also a barrier, bounded by
        ``join_timeout``: a process that has not reached it by then (or one that failed meanwhile) is named
        in one :class:`ClusterError` on every process, instead of a wait for ever."""
        c = self.cluster
        if c.num_processes == 1:
            return
        if c.is_chief:
            with self._changed:
                late = self._wait_for(lambda: [i for i, p in self._peers.items() if what not in p.agreed])
                if late:
                    why = (f"multi-worker: process{'es' if len(late) > 1 else ''} {', '.join(map(str, late))} did not "
                           f"reach {what} within {self.join_timeout:.0f} s of process 0 (FER_KERAS_CLUSTER_TIMEOUT); "
                           "restart every process with --resume")
                    for peer in self._peers.values():
                        self._tell(peer, {"op": "agreed", "what": what, "why": why})
                    raise ClusterError(why)
                values = {0: value, **{i: p.agreed.pop(what)["value"] for i, p in self._peers.items()}}
            mine = json.dumps(value, sort_keys=True)
            differ = [i for i, v in values.items() if json.dumps(v, sort_keys=True) != mine]
            why = ""
            if differ:
                shown = "; ".join(f"process {i}: {json.dumps(values[i], sort_keys=True)[:300]}"
                                  for i in [0, *differ])
                why = f"multi-worker: the processes disagree on {what} ({shown})" + (f"; {hint}" if hint else "")
            for peer in self._peers.values():
                self._tell(peer, {"op": "agreed", "what": what, "why": why})
        else:
            peer = self._peers[0]
            self._tell(peer, {"op": "agree", "what": what, "value": value})
            with self._changed:
                # Process 0 answers within its own bound (the values, or who never came): a little grace.
                if self._wait_for(lambda: [] if what in peer.agreed else [0], grace=10.0):
                    raise ClusterError(f"multi-worker: process 0 did not answer on {what} within "
                                       f"{self.join_timeout + 10:.0f} s (FER_KERAS_CLUSTER_TIMEOUT + 10 s); restart "
                                       "every process with --resume")
                why = peer.agreed.pop(what)["why"]
        if why:
            raise ClusterError(why)

    def _wait_for(self, missing, grace: float = 0.0) -> list[int]:
        """Waits (holding ``_changed``) until ``missing()`` is empty, at most ``join_timeout`` + ``grace``;
        returns who is still missing. Raises :class:`ClusterError` with the reason if this process is
        stopping meanwhile."""
        self._changed.wait_for(lambda: self._dying or not missing(), timeout=self.join_timeout + grace)
        if self._dying:
            raise ClusterError(self._why or "multi-worker: another process failed")
        return missing()

    def abort(self, why: str) -> None:
        """This process failed on its own (``why``): tells the others, which stop naming it."""
        with self._lock:
            self._finished = True
        for peer in list(self._peers.values()):
            self._tell(peer, {"op": "fail", "why": why, "process_id": self.cluster.process_id})
        # At exit JAX would wait for a shutdown barrier the others never reach; handlers run last-in
        # first-out, so this one ends the process first.
        atexit.register(exit_if_joined, 1)

    def finish(self) -> None:
        """The training is over on every process: says goodbye and ends JAX's distributed runtime
        (so process 0 may go on alone: test evaluation, plots, export)."""
        self.agree("goodbye", True)
        with self._lock:
            self._finished = True
        for peer in list(self._peers.values()):
            self._tell(peer, {"op": "bye"})
        global _joined
        if _joined is self:
            import jax

            jax.distributed.shutdown()
            _joined = None
        for peer in list(self._peers.values()):
            with contextlib.suppress(OSError):
                peer.sock.close()

    # -- Keras ---------------------------------------------------------------------------------
    def distribution(self):
        """Keras's data parallelism over every device of every process; each process feeds its own
        batches (``auto_shard_dataset=False``: the input is already this process's shard)."""
        if self._distribution is None:
            import jax
            import keras

            self._distribution = keras.distribution.DataParallel(devices=jax.devices(), auto_shard_dataset=False)
        return self._distribution

    def local_batch(self, batch_size: int) -> int:
        """Each process's slice of every global batch of ``batch_size`` (one clear error when it does
        not divide among the processes and their devices)."""
        import jax

        n, local = self.cluster.num_processes, jax.local_device_count()
        if batch_size % (n * local):
            raise ClusterError(f"--batch-size {batch_size} is the global batch: it must divide among "
                               f"{n} processes x {local} devices each")
        return batch_size // n


_joined: Watch | None = None


def _message(line: str) -> dict:
    """One message of the watch's channel: a JSON object with an ``op`` (and, by op, ``what``/``why``)."""
    message = json.loads(line)  # ValueError where it is not JSON
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        raise ValueError("not a message object with an op")
    needs = {"agree": ("what", "value"), "agreed": ("what", "why"), "fail": ("why",)}.get(message["op"], ())
    lacking = [k for k in needs if k not in message]
    if lacking:
        raise ValueError(f"a {message['op']} message without {', '.join(lacking)}")
    return message


def _print_and_exit(why: str) -> None:
    sys.stdout.flush()
    print(f"error: {why}", file=sys.stderr, flush=True)
    os._exit(1)


def exit_if_joined(status: int) -> None:
    """Ends the process now with ``status`` when it is in a cluster that has not finished (after its
    error is printed): at a normal exit JAX would wait for the cluster's shutdown barrier, which the
    other processes, told of the failure, never reach."""
    if _joined is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


@contextlib.contextmanager
def undistributed():
    """No Keras distribution within: what one process alone does with a replicated model (saving it:
    Keras makes a scratch optimizer variable while saving, which would otherwise be a collective
    that the other processes never join)."""
    import keras

    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def start(environ=None) -> Watch:
    """The cluster of ``--strategy multi-worker`` from the environment, joined and watched (JAX only)."""
    import keras

    if keras.backend.backend() != "jax":
        raise ClusterError(TENSORFLOW_ERROR)
    environ = os.environ if environ is None else environ
    cluster = cluster_from_env(environ)

    def seconds(name, default):
        text = environ.get(name, "")
        try:
            value = float(text) if text else default
        except ValueError:
            raise ClusterError(f"{name} must be a number of seconds; got {text!r}") from None
        if value <= 0:
            raise ClusterError(f"{name} must be positive; got {text!r}")
        return value

    watch = Watch(cluster, seconds("FER_KERAS_CLUSTER_TIMEOUT", CLUSTER_TIMEOUT_S),
                  seconds("FER_KERAS_WORKER_TIMEOUT", WORKER_TIMEOUT_S))
    watch.join()
    return watch
