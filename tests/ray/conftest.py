"""One real Ray cluster on loopback for this folder's tests (tests/ray_cluster.py), shared by its
modules: the head offers CPUs only, node gpu1 declares two GPUs (Ray hands out their ids on a
machine without them, as it would real ones). Token authentication is on. A server with
`--executor` on it is each module's own. The test that kills node gpu1 runs last
(test_ray_executor.py, at its end)."""

import re
import subprocess

import pytest

pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install -e '.[ray]'")

from tests.conftest import Server, kill_leftover_supervisors  # noqa: E402
from tests.ray_cluster import Node, start_cluster  # noqa: E402


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    c = start_cluster([Node("head", num_cpus=2, memory=3 << 30), Node("gpu1", num_cpus=2, num_gpus=2, memory=3 << 30)],
                      tmp_path_factory.mktemp("ray"))
    yield c
    c.stop()


def ray_server(cluster, folder, *extra: str, cls=Server, env: dict | None = None) -> Server:
    return cls(folder / "home", extra=["--executor", cluster.address, *extra],
               env={**cluster.driver_env(), **(env or {})}).start(timeout=90)


def stop(srv: Server, cluster) -> None:
    """Stop the server and end every session it left on the cluster: sessions outlive their
    server by design, and the next module's placement must find the nodes empty."""
    srv.stop()
    kill_leftover_supervisors(srv.home)
    out = cluster.run_driver(KILL_SESSIONS, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]


KILL_SESSIONS = """
import ray, time
ray.init(logging_level="ERROR")
def ours():
    return [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"].startswith("nsml-")]
for a in ours():
    ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=True)
deadline = time.monotonic() + 60
while ours() and time.monotonic() < deadline:
    time.sleep(0.2)
"""


def listening_ports(cluster) -> list[int]:
    """Every TCP port a process of the cluster listens on (GCS, raylets, object managers, agents,
    workers, the client server…), as `ss` sees them."""
    pids = {p for node in cluster.nodes.values() for p in node.pids()}
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=30).stdout
    ports = set()
    for line in out.splitlines():
        if any(int(p) in pids for p in re.findall(r"pid=(\d+)", line)):
            ports.add(int(line.split()[3].rsplit(":", 1)[1]))
    return sorted(ports)
