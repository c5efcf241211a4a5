"""The Ray executor: sessions on the nodes of an existing Ray cluster (docs/cluster.md).

`nsml server --executor ray://HOST:PORT` (Ray Client, for a server outside the cluster),
`--executor HOST:PORT` (the head's GCS, for a server on a cluster node) or `--executor ray`
(the head running on this machine). The scheduler's policy still decides *what* runs and on
which node it would like it; Ray decides *where* within what it offers: each session is an
actor (ray_host.SessionHost) holding its CPUs, memory and GPUs as Ray resources, asked for on
placement's node (soft affinity), and the node and the GPU ids Ray gave it are what is recorded.

The inventory is Ray's: its alive nodes, named by their `nsml.io/node` label, with their CPU,
GPU and memory resources; it is read again every few seconds (nodes come and go). A node Ray
reports dead takes its sessions with it: `vanished()` names them, and the scheduler marks them
lost at once rather than after the heartbeat timeout.

Ray is imported here only: the local executor, and `import nsml`, never load it.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from nsml.core.entities import Dataset, FileEntry, Session
from nsml.core.errors import InvalidInput, NsmlError
from nsml.core.inventory import GpuDevice, Node

from .executor import Launched
from .ray_host import NODE_LABEL

log = logging.getLogger(__name__)

NAMESPACE = "nsml"  # a server's actors live in NAMESPACE-<its instance>: servers sharing a cluster never collide
INVENTORY_EVERY = 2.0  # seconds between two readings of Ray's nodes
# Ray must have started a session's actor (and it its supervisor) by then: generous, since a
# node starts its worker processes a few at a time (100 sessions at once took 2 minutes here).
PLACE_TIMEOUT = 600.0
CALL_TIMEOUT = 10.0  # a call to a running session's actor (stop, signal, a note)
LIVE_OUTPUTS_LIMIT = 256 << 20


class RayUnavailable(InvalidInput):
    """The cluster cannot be reached, or Ray is not installed."""


@dataclass(frozen=True)
class RayNode:
    node: Node
    ray_id: str
    alive: bool
    address: str = ""  # the node's IP, as Ray knows it


def connect(address: str) -> None:
    """Join the cluster as a driver (once per process)."""
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--executor ray needs Ray on the server: pip install 'nsml[ray]' (and on every node).") from None
    if ray.is_initialized():
        return
    target = "auto" if address in ("ray", "auto") else address
    if target != "auto":
        _reachable(address)
    # Ray's C++ client logs every retry as a warning on stderr: one line of ours says it better.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    # Ray Client gives up after three tries of 5, 10 and 15 s; the head starts a server process
    # for each client, which on a loaded head took longer than that (CI). 15, 20 and 25 s instead.
    os.environ.setdefault("RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S", "15")
    try:
        ray.init(address=target, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False,
                 configure_logging=False)
    except Exception as exc:  # ConnectionError, a refused token, a version mismatch…
        text = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, ConnectionError) and target != "auto":
            # Its port answered (_reachable) but Ray would not have us: Ray says no more than this.
            raise RayUnavailable(f"The Ray cluster at {address} answered but refused this server ({text}): a missing or "
                                 f"wrong cluster token (give it RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN, "
                                 f"as on the nodes), another Ray version than its {ray.__version__}, or a head too busy to "
                                 f"start its client server in time.") from None
        raise RayUnavailable(f"Cannot reach the Ray cluster at {address}: {type(exc).__name__}: {text}") from None


def _reachable(address: str) -> None:
    """A quick look before ray.init, which retries an unreachable head for minutes."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"gcs://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise RayUnavailable(f"--executor {address}: give the head as HOST:PORT (its GCS), ray://HOST:PORT (Ray Client) or ray.")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        raise RayUnavailable(f"Cannot reach the Ray cluster at {address}: {exc.strerror or exc}. "
                             f"Is `ray start --head` running there (docs/cluster.md)?") from None


def read_nodes() -> list[RayNode]:
    import ray

    out = []
    for entry in ray.nodes():
        resources = entry.get("Resources") or {}
        labels = entry.get("Labels") or {}
        ray_id = entry["NodeID"]
        name = labels.get(NODE_LABEL) or f"{entry.get('NodeManagerHostname', 'node')}-{ray_id[:6]}"
        model = next((k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")), "")
        gpus = tuple(GpuDevice(i, model) for i in range(int(resources.get("GPU", 0))))
        node = Node(name, float(resources.get("CPU", 0.0)), int(resources.get("memory", 0)), gpus)
        out.append(RayNode(node, ray_id, bool(entry.get("Alive")), entry.get("NodeManagerAddress", "")))
    return out


def actor_name(session: Session) -> str:
    return f"session-{session.id}-{session.attempt}"


class RayExecutor:
    dynamic_inventory = True  # the scheduler reads inventory() again as nodes come and go

    def __init__(self, address: str, server_url: str, token, sandbox: str = "auto", network: bool = True,
                 paused_timeout: float = 300.0, heartbeat_every: float = 5.0, home: Path | None = None,
                 instance: str = "default"):
        self.address = address
        # Servers on one database share their instance (they must find each other's sessions);
        # two platforms on one cluster do not, though their session ids overlap.
        self.instance = instance
        self.namespace = f"{NAMESPACE}-{instance}"
        self.server_url = server_url
        self.token_for = token if callable(token) else (lambda _session, t=token: t)
        self.sandbox = sandbox  # asked of every node; "bwrap": a node without a sandbox runs nothing
        self.network = network
        self.paused_timeout = paused_timeout
        self.heartbeat_every = heartbeat_every
        self.home = home  # the server's: where a running session's outputs are copied to be served
        self._lock = threading.Lock()
        self._nodes: list[RayNode] = []
        self._read_at = 0.0
        connect(address)
        self._refresh(force=True)

    # -- the cluster ------------------------------------------------------------------------------
    def _refresh(self, force: bool = False) -> list[RayNode]:
        with self._lock:
            if force or time.monotonic() - self._read_at > INVENTORY_EVERY:
                try:
                    self._nodes = read_nodes()
                    self._read_at = time.monotonic()
                except Exception:
                    log.warning("reading Ray's nodes failed", exc_info=True)
            return self._nodes

    def refused(self) -> list[str]:
        """What a session's sandbox refuses besides its own machine: every node's address and
        the server's (IPv4 literals only: a route takes no names)."""
        import ipaddress
        from urllib.parse import urlsplit

        found = {n.address for n in self._refresh()} | {urlsplit(self.server_url).hostname or ""}
        out = []
        for a in found:
            try:
                if ipaddress.ip_address(a).version == 4 and not a.startswith("127."):
                    out.append(a)
            except ValueError:
                continue
        return sorted(out)

    def inventory(self) -> list[Node]:
        return [n.node for n in self._refresh() if n.alive]

    def vanished(self, sessions: list[Session]) -> dict[int, str]:
        """Running sessions whose node Ray reports dead or no longer knows: {id: why}."""
        nodes = self._refresh()
        alive = {n.node.name for n in nodes if n.alive}
        known = {n.node.name for n in nodes}
        out = {}
        for s in sessions:
            if s.node and s.node not in alive and s.supervisor_pid:
                out[s.id] = (f"its Ray node {s.node} left the cluster" if s.node in known
                             else f"its Ray node {s.node} is not in the cluster any more")
        return out

    # -- a session's life -------------------------------------------------------------------------
    def launch(self, session: Session, gpu_ids: tuple[int, ...], code: list[FileEntry], dataset: Dataset | None,
               dataset_files: list[FileEntry], outputs: list[FileEntry] = ()) -> Launched:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        wanted = next((n for n in self._refresh() if n.node.name == session.node and n.alive), None)
        r = session.resources
        options = dict(name=actor_name(session), namespace=self.namespace, lifetime="detached", max_restarts=0,
                       max_concurrency=4,  # an infer request may wait while stop and notes come in
                       num_cpus=r.cpus, num_gpus=r.gpus, memory=r.memory or None)
        if wanted is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(wanted.ray_id, soft=True)
        host = _actor_class().options(**options).remote()
        request = {
            "session": session, "instance": self.instance, "server_url": self.server_url,
            "token": self.token_for(session), "sandbox": self.sandbox, "network": self.network,
            "paused_timeout": self.paused_timeout, "heartbeat_every": self.heartbeat_every,
            "refused": self.refused(),
            "code": list(code), "dataset": dataset, "dataset_files": list(dataset_files), "outputs": list(outputs),
        }
        try:
            # Where Ray put it: placement's wish, unless Ray knew better.
            ray_id = ray.get(host.node_id.remote(), timeout=PLACE_TIMEOUT)
            name = next((n.node.name for n in self._refresh(force=True) if n.ray_id == ray_id), ray_id[:12])
            request["node_name"] = name
            started = ray.get(host.start.remote(request), timeout=PLACE_TIMEOUT)
        except Exception as exc:
            ray.kill(host, no_restart=True)
            if type(exc).__name__ == "GetTimeoutError":
                raise NsmlError(f"Ray did not start the session within {PLACE_TIMEOUT:.0f} s "
                                f"(no node offers {r.cpus:g} CPUs, {r.memory} bytes and {r.gpus} GPUs at once?)") from None
            cause = getattr(exc, "cause", None) or exc
            raise NsmlError(f"starting it on its Ray node failed: {type(cause).__name__}: {cause}") from None
        return Launched(started["pid"], tuple(started["gpu_ids"]), name)

    def _host(self, session: Session):
        import ray

        try:
            return ray.get_actor(actor_name(session), namespace=self.namespace)
        except ValueError:
            return None  # ended, killed, or its node is gone

    def _call(self, session: Session, method: str, *args, timeout: float = CALL_TIMEOUT, default=None):
        import ray

        host = self._host(session)
        if host is None:
            return default
        try:
            return ray.get(getattr(host, method).remote(*args), timeout=timeout)
        except Exception:
            log.debug("%s of %s on Ray failed", method, session.name, exc_info=True)
            return default

    def stop(self, session: Session) -> bool:
        return bool(self._call(session, "stop", default=False))

    def signal(self, session: Session, signum: int) -> bool:
        return bool(self._call(session, "signal", int(signum), default=False))

    def kill(self, session: Session) -> None:
        import ray

        host = self._host(session)
        if host is None:
            return
        try:
            ray.get(host.kill.remote(), timeout=CALL_TIMEOUT)
        except Exception:
            pass
        try:  # its supervisor ends with it (die_with_parent), and Ray gets the resources back
            ray.kill(host, no_restart=True)
        except Exception:
            pass

    def remove(self, session: Session) -> None:
        self.kill(session)  # the run directory is the actor's, on its node: it goes with it

    def release_workdir(self, session: Session) -> None:
        pass  # the actor drops the session's files itself once its supervisor has ended

    def note(self, session: Session, line: str) -> None:
        self._call(session, "note", line)

    def live_outputs(self, session: Session, code: dict[str, str]) -> list[tuple[str, Path, int]]:
        """The files a running session wrote so far, copied from its node to the server's home."""
        import shutil
        import tempfile

        files = self._call(session, "live_outputs", code, LIVE_OUTPUTS_LIMIT, timeout=60.0, default=[]) or []
        base = Path(self.home or tempfile.gettempdir()) / "live-outputs"
        base.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(dir=base))
        out = []
        for rel, data in files:
            target = folder / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            out.append((rel, target, len(data)))
        # Served once, then dropped: the tar is made from these paths while the reply streams.
        drop = threading.Timer(600.0, shutil.rmtree, args=(folder,), kwargs={"ignore_errors": True})
        drop.daemon = True  # never what keeps a stopping server alive
        drop.start()
        return out

    def infer_ready(self, session: Session) -> bool:
        return bool(self._call(session, "infer_ready", default=False))

    def infer(self, session: Session, data) -> object:
        import ray

        host = self._host(session)
        if host is None:
            from nsml.core.errors import Conflict

            raise Conflict(f"Infer session {session.name} is not running on the cluster any more.")
        try:
            return ray.get(host.infer.remote(data), timeout=300.0)
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, NsmlError):
                raise cause from None
            raise

    def user_pid(self, session: Session) -> int | None:
        return None  # on another machine: the usage sampler has nothing to read here

    def prune_views(self, current_filesets: set[int], datasets_in_use: set[str]) -> None:
        pass  # a node's views and blobs are a cache of its own (NSML_NODE_HOME), safe to delete when idle


_ACTOR_CLASS = None


def _actor_class():
    """SessionHost as a Ray actor class, made once: Ray exports a class each time one is made."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        from .ray_host import SessionHost

        _ACTOR_CLASS = ray.remote(SessionHost)
    return _ACTOR_CLASS
