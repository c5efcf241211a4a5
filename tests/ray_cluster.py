"""A real multi-node Ray cluster for the tests, on this machine: one `ray start --head --block`
and one `ray start --address=... --block` per worker node, each under a small guard process that
leads the node's own process group, with its own short temp dir (Unix socket paths must stay under
~100 bytes), its own free ports, its own declared resources (CPUs, GPUs, memory, custom resources),
a label naming it (`nsml.io/node=<name>`, visible in ray.nodes()[i]["Labels"]) and its own
environment: NSML_NODE_HOME=<root>/<name>, which Ray workers (tasks, actors) on that node inherit
from the raylet. Token authentication is on by default: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN in
every node's environment; a driver needs the same two variables (`Cluster.driver_env()`), and
every gRPC/HTTP port (GCS, raylet, core workers, runtime-env agent, Ray client) then refuses
callers without the token.

    with ray_cluster([Node("head", num_cpus=1), Node("gpu1", num_cpus=2, num_gpus=2)], root=tmp_path) as c:
        subprocess.run([sys.executable, "driver.py"], env={**os.environ, **c.driver_env()})
        with c.connect() as ray: ...    # or be a driver in this process
        c.kill_node("gpu1")             # SIGKILL its raylet: the node is lost
        c.wait_node_dead("gpu1")        # the head says Alive: False (~1 s with tuned health checks)

`ray stop` kills every Ray process of the machine, so it is never used: `stop()` SIGKILLs what this
helper started (raylets first, then each node's process group and every descendant: Ray gives each
worker a process group of its own) and checks that nothing started from our temp dirs survived.
If the process that started the cluster dies without stop(), the guards notice (their stdin pipe
closes) and end their nodes.

Note that GCS, raylet (node manager and object manager ports) and worker gRPC servers listen on
all interfaces whatever --node-ip-address says; only the advertised address, the runtime-env agent
and the Ray client server follow it (127.0.0.2 here by default, see loopback_ip).

Unless `tuned=False`, every node gets fast health checks (FAST_FAILURE_DETECTION), so a lost node
is reported dead ~1 s after its raylet dies instead of ~12-15 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tests.s3 import free_ports  # n distinct free loopback ports, held together while probing

LABEL = "nsml.io/node"  # the label every node carries, its value the node's name

# How fast the GCS declares a lost raylet dead (RayConfig, read from RAY_<name> in the GCS's
# environment; given to every node, harmless on the others). Ray's defaults: first check 5 s after
# a node registers, then every 3 s, 10 s timeout each, dead after 5 failures in a row. A SIGKILLed
# raylet's port refuses at once, so each check fails at once and detection takes about
# threshold x period: ~12-15 s by default (measured 12 s), ~1 s with these. The timeout stays
# generous so a healthy raylet on a loaded 2-core CI machine is not declared dead by mistake
# (it would need ~3 x 3.5 s of silence).
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "3000",
    "RAY_health_check_failure_threshold": "3",
}

# Quieter nodes for tests: no usage stats, no import warnings, unbuffered logs.
BASE_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_IMPORT_WARNING": "1",
    "PYTHONUNBUFFERED": "1",
}

# Variables that would change how a `ray start` we spawn behaves if inherited from the caller.
_SCRUB = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_NAMESPACE",
          "RAY_JOB_CONFIG_JSON_ENV_VAR", "RAY_RUNTIME_ENV_HOOK")




def has_ray_client(python: str) -> bool:
    """Whether `python` has ray[client]'s grpcio: `ray start --ray-client-server-port` needs it
    (and without it no client server is started at all)."""
    if python == sys.executable:
        import importlib.util

        return importlib.util.find_spec("grpc") is not None
    return subprocess.run([python, "-c", "import grpc"], capture_output=True).returncode == 0


def loopback_ip() -> str | None:
    """127.0.0.2 where it can be bound (Linux: all of 127/8 is loopback), else None.

    Ray rewrites 127.0.0.1 and localhost given as --node-ip-address into the machine's outward
    address, so every node would advertise (and its runtime-env agent bind) eth0's address;
    any other 127/8 address is kept as is."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
            return "127.0.0.2"
        except OSError:
            return None


@dataclass
class Node:
    """What one node declares. The first node given to start_cluster is the head."""

    name: str
    num_cpus: int = 1
    num_gpus: int = 0
    memory: int = 2 * 1024**3  # bytes schedulable as the `memory` resource
    object_store_memory: int = 80 * 1024**2  # Ray's minimum is 75 MiB
    resources: dict[str, float] = field(default_factory=dict)  # custom resources
    labels: dict[str, str] = field(default_factory=dict)  # more labels beside nsml.io/node
    env: dict[str, str] = field(default_factory=dict)  # more environment for this node's processes
    worker_ports: int = 24  # how many ports its worker processes (and drivers) may use


@dataclass
class RunningNode:
    spec: Node
    home: Path  # NSML_NODE_HOME of this node
    temp_dir: Path  # its --temp-dir (short: Unix socket paths)
    ports: dict[str, object]
    proc: subprocess.Popen
    log: Path
    node_id: str = ""
    killed: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pgid(self) -> int:
        return self.proc.pid

    def raylet_pids(self) -> list[int]:
        return [p for p, cmd in _descendants(self.proc.pid).items() if _exe(cmd) == "raylet"]

    def pids(self) -> list[int]:
        return [self.proc.pid, *_descendants(self.proc.pid)]


@dataclass
class Cluster:
    address: str  # GCS address, "ip:port", for ray.init(address=...) / ray start --address
    nodes: dict[str, RunningNode]
    root: Path
    short: Path  # the short folder holding every node's temp dir
    token: str | None  # the auth token, None when auth is off
    env: dict[str, str]  # what every node got (auth, health-check tuning, BASE_ENV)
    python: str
    started_in: float = 0.0  # seconds start_cluster took
    _stopped: bool = False

    @property
    def head(self) -> RunningNode:
        return next(iter(self.nodes.values()))

    def driver_env(self, token: bool = True) -> dict[str, str]:
        """Environment for a driver process (`ray.init(address=cluster.address)`)."""
        env = {"RAY_ADDRESS": self.address, **BASE_ENV}
        if self.token is not None:
            env["RAY_AUTH_MODE"] = "token"
            if token:
                env["RAY_AUTH_TOKEN"] = self.token
        else:
            env["RAY_AUTH_MODE"] = "disabled"
        return env

    def run_driver(self, code: str, *, env: dict | None = None, timeout: float = 120,
                   token: bool = True) -> subprocess.CompletedProcess:
        """Run `code` in a fresh Python process with the driver environment (plus `env`)."""
        full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
        full.update(self.driver_env(token=token))
        full.update(env or {})
        return subprocess.run([self.python, "-c", code], env=full, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root)

    @contextlib.contextmanager
    def connect(self, **init_kwargs):
        """Make this process a driver of the cluster for the `with` block (ray.init ... shutdown).

        Ray reads RAY_AUTH_MODE / RAY_AUTH_TOKEN once per process into a C++ cache, so they are set
        and that cache refreshed on the way in, and restored (and refreshed) on the way out."""
        import ray
        from ray._raylet import AuthenticationTokenLoader, Config

        saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
        env = self.driver_env()
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.update({k: env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN") if k in env})
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
        try:
            ray.init(address=self.address, **{"logging_level": "ERROR", **init_kwargs})
            try:
                yield ray
            finally:
                ray.shutdown()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()

    def nodes_state(self, timeout: float = 60) -> list[dict]:
        """`ray.nodes()` as seen by a fresh driver (dead nodes included)."""
        out = self.run_driver(_NODES_SCRIPT, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"ray.nodes() failed:\n{out.stdout}\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    def kill_node(self, name: str, everything: bool = False) -> None:
        """Simulate losing node `name`: SIGKILL its raylet only (its workers notice within ~1-2 s
        and exit, killing their direct children; `ray start --block` sees the raylet gone and
        ends the node's other processes), or with everything=True every process of the node at
        once (a machine that vanished: workers die without killing their children)."""
        node = self.nodes[name]
        if node is self.head:
            raise ValueError("kill_node is for worker nodes; stop() ends the head")
        node.killed = True
        if everything:
            _wait_gone(_kill_all(node), 15)
            return
        pids = node.raylet_pids()
        if not pids:
            raise RuntimeError(f"node {name} has no raylet")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids, 15)

    def wait_node_dead(self, name: str, timeout: float = 60) -> float:
        """Poll the head until node `name` is reported not alive; returns seconds waited."""
        node_id = self.nodes[name].node_id
        t0 = time.monotonic()
        out = self.run_driver(_WAIT_DEAD_SCRIPT.format(node_id=node_id, timeout=timeout), timeout=timeout + 60)
        if out.returncode != 0:
            raise RuntimeError(f"node {name} not reported dead within {timeout}s:\n{out.stdout}\n{out.stderr}")
        return time.monotonic() - t0

    def stop(self) -> None:
        """Kill every process this cluster started (never `ray stop`: it is machine-wide) and
        remove its temp dirs; raises if a raylet, GCS or agent of ours had to be hunted down."""
        if self._stopped:
            return
        self._stopped = True
        killed: list[int] = []
        for node in reversed(list(self.nodes.values())):  # worker nodes first, the head (GCS) last
            killed += _kill_all(node)
        _wait_gone(killed, 15)
        for node in self.nodes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.proc.wait(10)
            if node.proc.stdin:
                node.proc.stdin.close()
        left = _leftovers(self.short)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.short, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ray processes outlived their process groups (killed now): {left}")

    def leftovers(self) -> list[int]:
        """PIDs of processes still running from this cluster's temp dirs (empty after stop())."""
        return _leftovers(self.short)


_NODES_SCRIPT = """
import json, ray
ray.init(logging_level="ERROR", log_to_driver=False)
print(json.dumps(ray.nodes(), default=str))
"""

_WAIT_ALIVE_SCRIPT = """
import json, time, ray
ray.init(logging_level="ERROR", log_to_driver=False)
want, deadline = {names!r}, time.monotonic() + {timeout}
while True:
    alive = {{n["NodeName"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}}
    if all(name in alive for name in want):
        print(json.dumps({{name: alive[name] for name in want}}))
        raise SystemExit(0)
    if time.monotonic() > deadline:
        print(json.dumps([(n["NodeName"], n["Alive"]) for n in ray.nodes()]))
        raise SystemExit(1)
    time.sleep(0.1)
"""

_WAIT_DEAD_SCRIPT = """
import time, ray
ray.init(logging_level="ERROR", log_to_driver=False)
deadline = time.monotonic() + {timeout}
while time.monotonic() < deadline:
    if any(n["NodeID"] == "{node_id}" and not n["Alive"] for n in ray.nodes()):
        raise SystemExit(0)
    time.sleep(0.1)
raise SystemExit(1)
"""


def _exe(cmdline: list[str]) -> str:
    return os.path.basename(cmdline[0]) if cmdline else ""


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _descendants(pid: int) -> dict[int, list[str]]:
    kids, out, todo = _children_map(), {}, [pid]
    while todo:
        for child in kids.get(todo.pop(), []):
            if child not in out:
                out[child] = _cmdline(child)
                todo.append(child)
    return out


def _leftovers(short: Path) -> list[int]:
    """Live processes whose command line names one of our temp dirs: gcs_server, raylet, the
    Python helpers (monitor, log monitor, dashboard head, client server) and the guards. (Workers
    and agents rename themselves `ray::...`; they are found as descendants instead.)"""
    mark = str(short) + "/"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            if any(mark in arg for arg in _cmdline(int(entry))) and _alive(int(entry)):
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float) -> None:
    """Wait until the SIGKILLed `pids` are gone (SIGKILL is delivered asynchronously)."""
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _kill_all(node: RunningNode) -> list[int]:
    """SIGKILL a node: its raylet first (so it spawns no more workers), then its process group
    and every descendant found before (Ray puts each worker in a process group of its own).
    Returns the PIDs signalled."""
    tree = _descendants(node.proc.pid)
    for pid, cmd in tree.items():
        if _exe(cmd) == "raylet":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    _killpg(node.pgid)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return [node.proc.pid, *tree]


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _labels_arg(node: Node) -> str:
    labels = {LABEL: node.name, **node.labels}
    return ",".join(f"{k}={v}" for k, v in labels.items())


# Each node runs under this guard: `python -c _GUARD ray start ...`, the leader of the node's
# process group. It ends the node (its group and every descendant, raylet first) when its stdin
# reaches EOF, i.e. when the process that started the cluster dies, however it dies (and then
# removes the node's temp dir), and when `ray start` itself exits (it does when its raylet dies),
# so nothing of a node outlives it.
_GUARD = r"""
import os, signal, subprocess, sys, threading

def tree():
    kids = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                kids.setdefault(int(open(f"/proc/{e}/stat").read().rsplit(")", 1)[1].split()[1]), []).append(int(e))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [os.getpid()]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out

def name(pid):
    try:
        return os.path.basename(open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]).decode()
    except OSError:
        return ""

def end():
    pids = tree()
    for pid in sorted(pids, key=lambda p: name(p) != "raylet"):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    me, group = os.getpid(), os.getpgrp()
    for e in os.listdir("/proc"):
        if e.isdigit() and int(e) != me:
            try:
                if os.getpgid(int(e)) == group:
                    os.kill(int(e), signal.SIGKILL)
            except OSError:
                pass

proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)

parent_gone = threading.Event()

def watch():
    while sys.stdin.buffer.read(65536):
        pass
    parent_gone.set()
    end()  # the process that started us is gone: nobody will stop() this node, so tidy up too
    import shutil, time
    temp = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--temp-dir=")), None)
    if temp:
        time.sleep(0.5)
        shutil.rmtree(temp, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(temp))
        except OSError:
            pass
    os._exit(0)

watcher = threading.Thread(target=watch, daemon=True)
watcher.start()
rc = proc.wait()
if parent_gone.is_set():
    watcher.join()  # it exits the process when done
end()
os._exit(rc if rc >= 0 else 128 - rc)
"""


def _start_node(spec: Node, *, head_address: str | None, python: str, root: Path, short: Path,
                index: int, env: dict[str, str], node_ip: str | None, die_with_parent: bool) -> RunningNode:
    home = root / spec.name
    home.mkdir(parents=True, exist_ok=True)
    temp_dir = short / str(index)
    ports = free_ports(8 + spec.worker_ports)
    named = dict(zip(["port", "node_manager", "object_manager", "dashboard", "dashboard_agent_listen",
                      "dashboard_agent_grpc", "runtime_env_agent", "metrics_export"], ports[:8]))
    named["workers"] = ports[8:]
    cmd = [python, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
           f"--temp-dir={temp_dir}", f"--node-name={spec.name}",
           f"--num-cpus={spec.num_cpus}", f"--num-gpus={spec.num_gpus}", f"--memory={spec.memory}",
           f"--object-store-memory={spec.object_store_memory}",
           f"--labels={_labels_arg(spec)}",
           f"--node-manager-port={named['node_manager']}", f"--object-manager-port={named['object_manager']}",
           f"--dashboard-agent-listen-port={named['dashboard_agent_listen']}",
           f"--dashboard-agent-grpc-port={named['dashboard_agent_grpc']}",
           f"--runtime-env-agent-port={named['runtime_env_agent']}",
           f"--metrics-export-port={named['metrics_export']}",
           "--worker-port-list=" + ",".join(map(str, named["workers"]))]
    if spec.resources:
        cmd.append("--resources=" + json.dumps(spec.resources))
    if node_ip:
        cmd.append(f"--node-ip-address={node_ip}")
    if head_address is None:
        cmd += ["--head", f"--port={named['port']}", "--include-dashboard=false",
                f"--dashboard-port={named['dashboard']}", "--dashboard-host=127.0.0.1"]
        if has_ray_client(python):  # without ray[client], passing the port is an error
            named["ray_client_server"] = free_ports(1)[0]
            cmd.append(f"--ray-client-server-port={named['ray_client_server']}")
    else:
        cmd.append(f"--address={head_address}")
    full = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    full.update(env)
    full.update(spec.env)
    full["NSML_NODE_HOME"] = str(home)
    log = root / f"ray-{spec.name}.log"
    if die_with_parent:
        cmd = [sys.executable, "-c", _GUARD, *cmd]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full, start_new_session=True,
                                cwd=home, stdin=subprocess.PIPE if die_with_parent else subprocess.DEVNULL)
    return RunningNode(spec, home, temp_dir, named, proc, log)


def _wait_started(node: RunningNode, deadline: float) -> None:
    while time.monotonic() < deadline:
        text = node.log.read_text(errors="replace") if node.log.exists() else ""
        if "Ray runtime started" in text:
            return
        if node.proc.poll() is not None:
            raise RuntimeError(f"ray start for node {node.name} exited {node.proc.returncode}:\n{text[-4000:]}")
        time.sleep(0.1)
    text = node.log.read_text(errors="replace") if node.log.exists() else ""
    raise RuntimeError(f"ray start for node {node.name} did not finish:\n{text[-4000:]}")


def start_cluster(nodes: list[Node | dict], root: Path | str | None = None, *, auth: bool = True,
                  tuned: bool = True, env: dict[str, str] | None = None, python: str | None = None,
                  node_ip: str | None = "auto", die_with_parent: bool = True, timeout: float = 180) -> Cluster:
    """Start the head (nodes[0]) and the worker nodes; return once `ray.nodes()` shows them all alive.

    root: where node homes (`<root>/<name>`, NSML_NODE_HOME) and `ray start` logs go (default: a
    folder inside the cluster's temp dir). auth: token authentication (RAY_AUTH_MODE=token and a
    fresh RAY_AUTH_TOKEN on every node; False: RAY_AUTH_MODE=disabled, explicitly, since Ray turns
    token mode on by itself when ~/.ray/auth_token exists). tuned: fast node-death detection
    (FAST_FAILURE_DETECTION). env: more environment for every node. python: the interpreter whose
    Ray runs the nodes (and run_driver). node_ip: the address nodes advertise ("auto": 127.0.0.2
    where possible, see loopback_ip; None: Ray's choice, the outward address). die_with_parent:
    run each `ray start` under a guard (_GUARD) that ends the node when this process dies, so a
    killed test run leaves no cluster behind.
    """
    specs = [n if isinstance(n, Node) else Node(**n) for n in nodes]
    if not specs:
        raise ValueError("a cluster needs at least a head node")
    names = [n.name for n in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"node names must differ: {names}")
    t0 = time.monotonic()
    short = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # sockets live under it: keep it short
    root = Path(root) if root is not None else short / "root"
    root.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    if node_ip == "auto":
        node_ip = loopback_ip()
    token = secrets.token_hex(32) if auth else None
    common = dict(BASE_ENV)
    common["RAY_AUTH_MODE"] = "token" if auth else "disabled"
    if token:
        common["RAY_AUTH_TOKEN"] = token
    if tuned:
        common.update(FAST_FAILURE_DETECTION)
    common.update(env or {})
    cluster = Cluster("", {}, root, short, token, common, python)
    deadline = time.monotonic() + timeout
    try:
        head = _start_node(specs[0], head_address=None, python=python, root=root, short=short, index=0, env=common,
                           node_ip=node_ip, die_with_parent=die_with_parent)
        cluster.nodes[head.name] = head
        if node_ip:  # the GCS address is known now: start the worker nodes while the head starts
            cluster.address = f"{node_ip}:{head.ports['port']}"
        else:
            _wait_started(head, deadline)
            cluster.address = _head_address(head)
        # a worker node's `ray start` tries the GCS once a second, RAY_gcs_server_port_wait_time_s times
        wait = {"RAY_gcs_server_port_wait_time_s": str(int(max(20, deadline - time.monotonic())))}
        for i, spec in enumerate(specs[1:], start=1):
            node = _start_node(spec, head_address=cluster.address, python=python, root=root, short=short,
                               index=i, env={**common, **wait}, node_ip=node_ip, die_with_parent=die_with_parent)
            cluster.nodes[node.name] = node
        for node in cluster.nodes.values():
            _wait_started(node, deadline)
        _wait_alive(cluster, deadline)
    except BaseException:
        with contextlib.suppress(Exception):
            cluster.stop()
        raise
    cluster.started_in = time.monotonic() - t0
    return cluster


def _head_address(head: RunningNode) -> str:
    """The GCS address the head advertises (`ray start --address='IP:PORT'` in its output)."""
    import re

    text = head.log.read_text(errors="replace")
    found = re.findall(r"ray start --address='([^']+)'", text)
    return found[-1] if found else f"127.0.0.1:{head.ports['port']}"


def _wait_alive(cluster: Cluster, deadline: float) -> None:
    """One driver that waits until the head lists every node alive; records their node IDs."""
    want = [n.name for n in cluster.nodes.values()]
    left = max(5.0, deadline - time.monotonic())
    out = cluster.run_driver(_WAIT_ALIVE_SCRIPT.format(names=want, timeout=left), timeout=left + 30)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"nodes {want} not all alive:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    ids = json.loads(lines[-1])
    for node in cluster.nodes.values():
        node.node_id = ids[node.name]


@contextlib.contextmanager
def ray_cluster(nodes: list[Node | dict], root: Path | str | None = None, **kwargs) -> Iterator[Cluster]:
    """start_cluster(...) as a context manager: the cluster is stopped (for sure) at the end."""
    cluster = start_cluster(nodes, root, **kwargs)
    try:
        yield cluster
    finally:
        cluster.stop()
