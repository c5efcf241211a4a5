"""Two servers, one PostgreSQL, one bucket (and one NSML home, as on a shared filesystem): both
serve the same users; a session started through one is seen, graphed and stopped through the
other; scheduling runs in the one holding the lease, and when that one is killed mid-schedule
the other takes over within seconds, and the sessions it had started carry on, reporting to
the survivor."""

import signal
import time

import pytest

from tests.conftest import (
    Cli, Server, clean_env, kill_leftover_supervisors, open_gate, start_session, wait_for, write_dataset, write_project,
)

LEASE_TTL = 3
REPORTS = """\
import nsml
for step in range(20):
    nsml.report(step=step, loss=1.0 / (step + 1))
"""
GATED = """\
import os, time
import nsml
nsml.report(step=0, loss=1.0)
print("waiting", flush=True)
while not os.path.exists("gate"):
    time.sleep(0.05)
print("released", flush=True)
"""


@pytest.fixture
def pair(postgres, s3_server, tmp_path):
    home = tmp_path / "home"
    extra = ["--db", postgres.new_database(), "--blobs", s3_server.url()]
    env = {**s3_server.env(), "NSML_LEASE_TTL": str(LEASE_TTL), "NSML_HEARTBEAT_TIMEOUT": "20"}
    first = Server(home, extra=extra, env=env).start()
    second = Server(home, extra=extra, env=env).start()  # the same home: its server.json now names the second
    second.token = first.token
    yield first, second
    for srv in (first, second):
        srv.stop(signal.SIGKILL)
    kill_leftover_supervisors(home)


def cli_for(srv: Server, folder, main: str) -> Cli:
    return Cli({**clean_env(srv.home), "NSML_SERVER_URL": srv.url, "NSML_TOKEN": srv.token}, write_project(folder, main))


def test_two_servers_serve_one_platform_and_the_survivor_takes_over(pair, tmp_path):
    first, second = pair
    via_first, via_second = cli_for(first, tmp_path / "a", REPORTS), cli_for(second, tmp_path / "b", GATED)
    via_first("dataset", "push", "shared", write_dataset(tmp_path / "data"))
    assert "shared" in via_second("dataset", "ls").stdout

    trained = start_session(via_first, "-d", "shared", "-g", "0")
    assert second.wait(trained)["status"] == "exited"  # seen through the other
    series = second.api.get(f"/api/sessions/{trained}/metrics/loss").json()
    assert series["steps"] == [float(i) for i in range(20)]
    assert second.api.get("/api/web/graph", params={"sessions": trained, "keys": "loss"}).status_code == 200

    stopped = start_session(via_second, "-d", "shared", "-g", "0")
    wait_for(lambda: "waiting" in second.api.get(f"/api/sessions/{stopped}/logs").json().get("text", ""), "it to run")
    via_first("stop", stopped)  # through the other server
    assert second.wait(stopped)["status"] == "stopped"

    carries_on = start_session(via_second, "-d", "shared", "-g", "0")
    wait_for(lambda: first.session(carries_on)["status"] == "running" and "waiting" in
             first.api.get(f"/api/sessions/{carries_on}/logs").json().get("text", ""), "the long session to run")

    first.stop(signal.SIGKILL)  # the lease holder (it started first) dies mid-schedule
    t0 = time.monotonic()
    queued = start_session(via_second, "-d", "shared", "-g", "0")
    wait_for(lambda: second.session(queued)["status"] in ("running", "exited"), "the survivor to schedule", timeout=60)
    took = time.monotonic() - t0
    assert took < LEASE_TTL + 15, f"the survivor took {took:.1f} s to take over"
    open_gate(second, queued, carries_on)
    assert second.wait(queued)["status"] == "exited"
    s = second.wait(carries_on)
    assert s["status"] == "exited", s  # its supervisor now reports to the survivor: not lost
    assert "released" in second.api.get(f"/api/sessions/{carries_on}/logs").json()["text"]
    print(f"failover: the survivor scheduled a new session {took:.1f} s after the lease holder was killed")
