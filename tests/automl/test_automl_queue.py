"""A study's trials are the owner's work like any other: on a declared inventory of 2 GPUs with
a policy capping alice at 1 GPU, her study of population 3 runs one trial at a time (the others
queued with the quota as their reason), bob's session started later still gets the free GPU,
and the study finishes all its trials once its running ones end. Real server, real sessions,
and another user who may neither read nor stop her private study."""

import json

import httpx
import pytest

from tests.conftest import Cli, Server, clean_env, serve_declared, start_session, wait_for, write_project

from .test_automl_server import TRAIN, config, detail, ended, release_until_ended, start

pytest.importorskip("optuna")

NODES = """
nodes:
  - name: box
    cpus: 8
    memory: 32G
    gpus: {count: 2, model: NVIDIA A100-SXM4-80GB, memory: 80G}
"""
POLICY = """
order: fair
max_gpus:
  alice: 1
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_declared(tmp_path_factory, "automl-queue", NODES, POLICY)


@pytest.fixture(scope="module")
def people(srv, tmp_path_factory):
    code = write_project(tmp_path_factory.mktemp("automl-queue-code") / "code", TRAIN)
    alice = Cli(clean_env(srv.home), code)
    tokens = {name: srv.api.post("/api/users", json={"name": name}).json()["token"] for name in ("bob", "eve")}
    bob = Cli({**clean_env(srv.home), "NSML_SERVER_URL": srv.url, "NSML_TOKEN": tokens["bob"]}, code)
    eve = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tokens['eve']}"}, timeout=30)
    return alice, bob, eve


def trial_states(srv: Server, cli: Cli, study: str) -> list[dict]:
    return [srv.session(t["session"]) for t in detail(cli, study)["trials"] if t["session"]]


def test_trials_wait_for_their_owners_quota_while_others_use_the_free_gpu(srv, people):
    alice, bob, eve = people
    gpu = {"gpus": 1, "cpus": 1, "memory": "1G"}
    s = start(alice, "quota.json", config(args="--epochs 2 --hold 1", population=3, resources=gpu,
                                           termination={"max_session_number": 3}), "--visibility", "private")
    children = wait_for(lambda: len(c := trial_states(srv, alice, s["name"])) == 3 and c, "three trials", timeout=60)
    wait_for(lambda: sorted(c["status"] for c in trial_states(srv, alice, s["name"])) == ["queued", "queued", "running"],
             "one trial to run", timeout=60)
    queued = [c for c in trial_states(srv, alice, s["name"]) if c["status"] == "queued"]
    assert all("over alice's GPU quota (1 of 1 in use, this asks for 1)" in c["queue_reason"] for c in queued), queued
    theirs = start_session(bob, "-g", "1", "-c", "1", "--memory", "1G", "-a", "--epochs 1")  # queued after her trials
    assert srv.wait(theirs, ("running", "exited"), timeout=60)["status"] in ("running", "exited")

    # Her private study and its trials are hers: another user sees nothing and stops nothing.
    owner, dataset, number = s["name"].split("/")
    for method, path in (("GET", f"/api/automl/{owner}/{dataset}/{number}"), ("GET", f"/api/automl/{owner}/{dataset}/{number}/rank"),
                         ("POST", f"/api/automl/{owner}/{dataset}/{number}/stop"), ("DELETE", f"/api/automl/{owner}/{dataset}/{number}")):
        assert eve.request(method, path).status_code == 404, path
    assert all(r["name"] != s["name"] for r in eve.get("/api/automl", params={"all": "true"}).json())
    assert eve.get(f"/api/sessions/{children[0]['name']}").status_code == 404  # a trial is as private as its study

    release_until_ended(srv, alice, s["name"])
    assert ended(srv, s["name"])["status"] == "exited"
    d = detail(alice, s["name"])
    assert [t["state"] for t in d["trials"]] == ["complete"] * 3
    usage = json.loads(alice("usage", "-j").stdout)
    mine = next(r for r in usage["rows"] if r["holder"] == "alice")
    assert mine["total"] > 0  # her trials' GPU time is charged to her like any session's


def test_preemptible_trials_fill_idle_gpus_make_way_and_come_back_from_their_checkpoints(srv, people):
    """Stop-and-go with the scheduler: bob's study of preemptible trials takes both GPUs; alice's
    regular session preempts one (checkpointed through its bound save, paused, requeued), runs,
    and the trial then resumes from its checkpoint and completes."""
    alice, bob, _ = people
    gpu = {"gpus": 1, "cpus": 1, "memory": "1G"}
    s = start(bob, "preemptible.json", config(args="--epochs 3 --hold 1", population=2, resources=gpu, preemptible=True,
                                               termination={"max_session_number": 2}))

    def both_ready():
        kids = trial_states(srv, bob, s["name"])
        return len(kids) == 2 and all(k["status"] == "running" and k["pausable"] and k["preemptible"] for k in kids) and \
            all(srv.api.get(f"/api/sessions/{k['name']}/checkpoints").json() for k in kids) and kids

    kids = wait_for(both_ready, "both trials to run and save", timeout=90)
    theirs = start_session(alice, "-g", "1", "-c", "1", "--memory", "1G", "-a", "--epochs 1")
    preempted = wait_for(lambda: next((k for k in trial_states(srv, bob, s["name"]) if k["attempt"] == 2), None),
                         "a trial to be preempted and queued again", timeout=90)
    assert srv.wait(theirs, ("exited",), timeout=90)["status"] == "exited"

    release_until_ended(srv, bob, s["name"])
    assert ended(srv, s["name"])["status"] == "exited"
    assert [t["state"] for t in detail(bob, s["name"])["trials"]] == ["complete", "complete"]
    again = srv.session(preempted["name"])
    assert again["status"] == "exited" and again["resumed_from"].startswith("paused-") and {k["name"] for k in kids} >= {again["name"]}
