"""The real multi-node Ray cluster helper (tests/ray_cluster.py) does what the Ray executor's tests
rely on: declared resources and labels per node, a per-node environment that actors inherit, token
authentication that refuses drivers without the token, node loss that the head notices, and a
clean stop that leaves no Ray process behind."""

import json
import time

import pytest

pytest.importorskip("ray", reason="Ray is not installed (pip install ray): the real-cluster tests need it")

from tests.ray_cluster import LABEL, Node, start_cluster  # noqa: E402

GiB = 1024**3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = start_cluster([Node("head", num_cpus=1, memory=1 * GiB),
                       Node("gpu1", num_cpus=2, num_gpus=2, memory=3 * GiB, resources={"fast_disk": 1},
                            labels={"zone": "a"}),
                       Node("spare", num_cpus=1, memory=1 * GiB)],  # the one kill_node takes away
                      root=tmp_path_factory.mktemp("ray"))
    yield c
    c.stop()
    assert c.leftovers() == []


def test_nodes_have_their_declared_resources_and_labels(cluster):
    nodes = {n["NodeName"]: n for n in cluster.nodes_state() if n["NodeName"] in ("head", "gpu1")}
    assert nodes["head"]["Alive"] and nodes["gpu1"]["Alive"]
    head, gpu = nodes["head"]["Resources"], nodes["gpu1"]["Resources"]
    assert head["CPU"] == 1 and "GPU" not in head and head["memory"] == 1 * GiB
    assert gpu["CPU"] == 2 and gpu["GPU"] == 2 and gpu["memory"] == 3 * GiB and gpu["fast_disk"] == 1
    assert nodes["head"]["Labels"][LABEL] == "head"
    assert nodes["gpu1"]["Labels"][LABEL] == "gpu1" and nodes["gpu1"]["Labels"]["zone"] == "a"
    assert nodes["gpu1"]["NodeID"] == cluster.nodes["gpu1"].node_id


def test_an_actor_runs_where_its_label_says_and_sees_that_nodes_environment(cluster):
    out = cluster.run_driver("""
import json, os, ray
ray.init(logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=0, label_selector={"%s": "gpu1"})
class Where:
    def get(self):
        return os.environ.get("NSML_NODE_HOME"), ray.get_runtime_context().get_node_id()
print(json.dumps(ray.get(Where.remote().get.remote())))
""" % LABEL)
    assert out.returncode == 0, out.stderr
    home, node_id = json.loads(out.stdout.strip().splitlines()[-1])
    assert home == str(cluster.root / "gpu1") and node_id == cluster.nodes["gpu1"].node_id


@pytest.mark.parametrize("env", [{"RAY_AUTH_MODE": "disabled"}, {"RAY_AUTH_TOKEN": "0" * 64}],
                         ids=["no-token", "wrong-token"])
def test_a_driver_without_the_token_is_refused(cluster, env):
    code = "import ray; ray.init(); print('CONNECTED', len(ray.nodes()))"
    # one GCS connection attempt instead of twenty, so the refusal takes seconds
    out = cluster.run_driver(code, token=False, env={"RAY_gcs_server_port_wait_time_s": "1", **env})
    assert out.returncode != 0 and "CONNECTED" not in out.stdout
    assert "InvalidAuthToken" in out.stderr or "AuthenticationError" in out.stderr, out.stderr[-2000:]
    ok = cluster.run_driver(code)
    assert ok.returncode == 0 and "CONNECTED 3" in ok.stdout, ok.stderr[-2000:]


def test_kill_node_makes_the_head_report_it_dead(cluster):
    spare = cluster.nodes["spare"]
    raylets = spare.raylet_pids()
    assert raylets
    cluster.kill_node("spare")
    assert all(_state(p) in "ZX" for p in raylets)
    waited = cluster.wait_node_dead("spare", timeout=60)
    assert waited < 60
    states = {n["NodeName"]: n["Alive"] for n in cluster.nodes_state()}
    assert states == {"head": True, "gpu1": True, "spare": False}


def test_stop_leaves_no_ray_process_behind(tmp_path):
    c = start_cluster([Node("solo", num_cpus=1)], root=tmp_path, auth=False)
    pids = c.head.pids()
    assert any(p in c.head.raylet_pids() for p in pids)
    c.stop()
    time.sleep(0.2)
    assert c.leftovers() == []
    assert not [p for p in pids if _state(p) not in "ZX"]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "X"


def test_this_process_can_be_a_driver_for_a_while(cluster):
    with cluster.connect() as ray:
        assert {n["NodeName"] for n in ray.nodes()} == {"head", "gpu1", "spare"}
        assert ray.cluster_resources()["GPU"] == 2
    import ray

    assert not ray.is_initialized()
