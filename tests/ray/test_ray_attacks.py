"""The attack suite again, on the Ray executor (issue 17): the same hostile scripts
(tests/security/attacks/) run as real sessions placed on Ray nodes, and must get nothing: no
token, no hidden label, no privilege, no platform process, and no connection to anything on
the host, now including every port a Ray process of the cluster listens on (the GCS, the
raylets, the object managers, the agents, the client server and dashboard where they run).
Submit and infer sessions run on the nodes too; their evaluation stays on the server."""

import pytest

from tests.ray.conftest import listening_ports, ray_server, stop
from tests.security.conftest import (  # noqa: F401 - fixtures
    LeaderServer, assert_held, listener, needs_sandbox, root_secrets, started, wildcard, cli_for, hostile_project, logs,
)
from tests.security.test_session_attacks import (
    FAMILIES, assert_nothing_leaked, base_targets, board as board, kept_for, runner_of, section, wait_ended,  # noqa: F401
)

pytestmark = needs_sandbox


@pytest.fixture(scope="module")
def srv(cluster, tmp_path_factory):
    server = ray_server(cluster, tmp_path_factory.mktemp("ray-attacked"), cls=LeaderServer, env={"NSML_PAUSED_TIMEOUT": "60"})
    yield server
    stop(server, cluster)


@pytest.fixture(scope="module")
def ray_ports(cluster):
    ports = listening_ports(cluster)
    assert cluster.address.rsplit(":", 1)[1] in map(str, ports), f"the GCS port is not among {ports}"
    return ports


@pytest.fixture(scope="module")
def trained(srv, board, listener, wildcard, root_secrets, ray_ports, tmp_path_factory):
    work = tmp_path_factory.mktemp("ray-trained")
    targets = base_targets(srv, board, listener, root_secrets, wildcard)
    targets["extra_ports"] = [[p, "a port of the Ray cluster"] for p in ray_ports]
    project = hostile_project(work / "code", targets)
    cli = cli_for(srv, work)
    name = started(cli, project, "-d", board["name"], "-g", "0", "-a", "--attacks " + ",".join(FAMILIES))
    info = wait_ended(srv, name)
    text = logs(srv, name)
    return {"name": name, "info": info, "log": text, "kept": kept_for(srv, cli, name, work / "kept"), "cli": cli,
            "project": project}


def test_a_training_session_on_a_ray_node_gets_nothing(srv, board, listener, wildcard, root_secrets, trained):
    assert trained["info"]["status"] == "exited", f"{trained['info']}\n{trained['log'][-3000:]}"
    assert trained["info"]["node"] in ("head", "gpu1")
    assert "on Ray node" in trained["log"]
    for family in FAMILIES:
        assert_held(section(trained["log"], family), family)
    assert "BLOCKED test_label in the dataset view: ['train']" in trained["log"]
    assert listener.accepted == [] and wildcard.accepted == []
    assert_nothing_leaked(trained["kept"], srv, board, root_secrets)
    env_keys = next(ln for ln in trained["log"].splitlines() if ln.startswith("NOTE environment keys"))
    assert "RAY_" not in env_keys and "NSML_TOKEN" not in env_keys, env_keys  # the cluster token stays out


def test_no_ray_port_answers_a_session(trained, ray_ports):
    text = section(trained["log"], "network")
    tried = [ln for ln in text.splitlines() if "a port of the Ray cluster" in ln]
    assert len(tried) >= len(ray_ports), f"the session tried {len(tried)} of {len(ray_ports)} Ray ports"
    assert not [ln for ln in tried if ln.startswith("ATTACK-OK")], tried


def test_a_submit_on_a_ray_node_sees_test_data_only_and_is_scored_on_the_server(srv, board, listener, wildcard, root_secrets,
                                                                                 trained, tmp_path):
    cli = trained["cli"]
    proc = cli("submit", trained["name"], "0", check=False, timeout=300)
    runner = runner_of(cli, trained["name"], "submit")
    text = logs(srv, runner)
    assert "on Ray node" in text and "DONE processes" in text, f"{proc.stdout}\n{proc.stderr}\n{text[-3000:]}"
    assert_held(text, *FAMILIES)
    assert "BLOCKED test_label in the dataset view: ['test']" in text
    assert next(ln for ln in text.splitlines() if ln.startswith("NOTE network interfaces")).endswith("['lo']")
    assert listener.accepted == [] and wildcard.accepted == []
    assert_nothing_leaked(kept_for(srv, cli, runner, tmp_path / "kept") + proc.stdout.encode() + proc.stderr.encode(),
                          srv, board, root_secrets)


def test_an_infer_session_on_a_ray_node_answers_through_its_actor_and_stays_confined(srv, board, listener, wildcard,
                                                                                      root_secrets, trained):
    cli = trained["cli"]
    proc = cli("infer", f"{trained['name']}/0", input="x\n", check=False, timeout=300)
    try:
        report = proc.stdout
        assert "DONE processes" in report, f"{proc.stdout}\n{proc.stderr}"
        assert_held(report, *FAMILIES)
        assert "NOTE network interfaces: ['lo']" in report
        assert listener.accepted == [] and wildcard.accepted == []
        runner = runner_of(cli, trained["name"], "infer")
        assert "on Ray node" in logs(srv, runner)
        assert_nothing_leaked(report.encode() + logs(srv, runner).encode(), srv, board, root_secrets)
    finally:
        cli("infer", f"{trained['name']}/0", "--stop", check=False)
