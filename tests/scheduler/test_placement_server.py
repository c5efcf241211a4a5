"""Placement by declared end against a real server with real sessions (in the sandbox), on a
declared inventory of two nodes, under each setting of the policy's `place_by_end`.

Node `small` (2 GPUs, 2 CPUs) holds a session declared to end in 10 minutes; node `big` (3 GPUs,
8 CPUs) one declared to end in 2 hours (it asks 4 CPUs: only `big` has them). A 1-GPU session
declared for 1 hour then goes where it extends the node's release time least, `big` (it ends
before that node's other session does: `big` is no later whole than it was), leaving `small`
to come free whole in 10 minutes. Packing alone puts it on the fullest node, `small`, which
then stays busy for the hour."""

import pytest

from tests.conftest import Server, cli_in, open_gate, serve_declared, start_session, wait_for, write_project

from .test_scheduling import HOLD

NODES = """
nodes:
  - name: small
    cpus: 2
    memory: 8G
    gpus: {count: 2, model: NVIDIA A100-SXM4-80GB, memory: 80G}
  - name: big
    cpus: 8
    memory: 32G
    gpus: {count: 3, model: NVIDIA A100-SXM4-80GB, memory: 80G}
"""
TINY = ("-c", "0.1", "--memory", "128M")


@pytest.fixture(scope="module", params=[True, False], ids=["by-end", "packing-only"])
def srv(request, tmp_path_factory):
    for server in serve_declared(tmp_path_factory, "placement", NODES, f"place_by_end: {str(request.param).lower()}\n"):
        server.place_by_end = request.param
        yield server


def node_of(srv: Server, name: str) -> str:
    return wait_for(lambda: (s := srv.session(name))["status"] == "running" and s["node"], f"{name} to run")


def test_a_session_goes_where_it_extends_the_nodes_release_time_least(srv, tmp_path):
    cli = cli_in(srv, tmp_path / "work")
    write_project(cli.cwd, HOLD)
    short = start_session(cli, "-g", "1", "--time-limit", "10m", *TINY)
    assert node_of(srv, short) == "small"  # the same release time either way: the fullest
    long = start_session(cli, "-g", "1", "--time-limit", "2h", "-c", "4", "--memory", "128M")
    assert node_of(srv, long) == "big"  # the one node with 4 CPUs
    hour = start_session(cli, "-g", "1", "--time-limit", "1h", *TINY)
    placed = node_of(srv, hour)
    assert placed == ("big" if srv.place_by_end else "small"), srv.session(hour)
    for name in (short, long, hour):
        open_gate(srv, name)
    for name in (short, long, hour):
        assert srv.wait(name)["status"] == "exited"
