"""Fair share, quotas, credits and usage accounting against a real server with real sessions
(in the sandbox), on a declared inventory of 3 GPUs and a policy file: two users competing, low
priority within a fair share served as normal, a team over its quota, a user out of credit,
who may read whose usage, and a preemption that resumes from its checkpoint."""

import httpx
import pytest

from tests.conftest import serve_declared, Cli, Server, clean_env, open_gate, start_session, wait_for, write_project

from .test_scheduling import HOLD, SMALL

NODES = """
nodes:
  - name: box
    cpus: 8
    memory: 32G
    gpus: {count: 3, model: NVIDIA A100-SXM4-80GB, memory: 80G}
"""
POLICY = """
order: fair
max_gpus:
  team:vision: 1
credits:
  period: 1d
  frank: {refill: 0, cap: 1}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_declared(tmp_path_factory, "fair", NODES, POLICY)


@pytest.fixture(scope="module")
def users(srv, tmp_path_factory) -> dict[str, Cli]:
    """alice (the admin), bob, carol and dave (team vision, made by carol), eve, frank: a CLI each."""
    code = write_project(tmp_path_factory.mktemp("fair-code") / "code", HOLD)
    clis = {"alice": Cli(clean_env(srv.home), code)}
    tokens = {}
    for name in ("bob", "carol", "dave", "eve", "frank"):
        tokens[name] = srv.api.post("/api/users", json={"name": name}).json()["token"]
        clis[name] = Cli({**clean_env(srv.home), "NSML_SERVER_URL": srv.url, "NSML_TOKEN": tokens[name]}, code)
    carol = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {tokens['carol']}"}, timeout=30)
    assert carol.post("/api/teams", json={"name": "vision"}).status_code == 201
    assert carol.post("/api/teams/vision/members", json={"user": "dave"}).status_code == 200
    clis["tokens"] = tokens
    return clis


@pytest.fixture(autouse=True)
def everything_released(srv):
    yield
    for s in srv.api.get("/api/sessions", params={"all": "true"}).json():
        if s["status"] == "running":
            open_gate(srv, s["name"])
        elif s["status"] == "queued":
            srv.api.post(f"/api/sessions/{s['name']}/stop")
    wait_for(lambda: not srv.api.get("/api/sessions").json(), "every session to end")  # (the active ones, by default)


def status(srv: Server, name: str) -> dict:
    return srv.session(name)


def running(srv: Server, name: str) -> dict:
    return wait_for(lambda: (s := status(srv, name))["status"] == "running" and s, f"{name} to run")


def as_user(srv: Server, users, name: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {users['tokens'][name]}"}, timeout=30)


def test_a_freed_gpu_goes_to_the_user_holding_least_not_to_the_oldest_request(srv, users):
    alice, bob = users["alice"], users["bob"]
    held = [start_session(alice, "-g", "1", *SMALL) for _ in range(3)]
    for name in held:
        running(srv, name)
    alices_next = start_session(alice, "-g", "1", *SMALL)  # queued first
    bobs = start_session(bob, "-g", "1", *SMALL)  # queued after it
    queued = {s["name"]: s for s in srv.api.get("/api/sessions", params={"all": "true"}).json() if s["status"] == "queued"}
    assert (queued[bobs]["queue_position"], queued[alices_next]["queue_position"]) == (1, 2)  # bob holds nothing: first
    open_gate(srv, held[0])
    assert srv.wait(held[0])["status"] == "exited"
    running(srv, bobs)
    assert status(srv, alices_next)["status"] == "queued"  # alice still holds 2 of 3
    open_gate(srv, held[1])
    running(srv, alices_next)


def positions(srv: Server, queued: int) -> dict[str, int]:
    """The queue's positions once the plan the API shows (cached a second) has all `queued`."""
    def settled():
        got = {s["name"]: s["queue_position"] for s in srv.api.get("/api/sessions", params={"all": "true"}).json()
               if s["status"] == "queued"}
        return len(got) == queued and None not in got.values() and sorted(got.values()) == list(range(1, queued + 1)) and got
    return wait_for(settled, f"{queued} queued sessions with their positions", every=0.25)


def test_low_priority_within_its_fair_share_goes_before_normal_work_beyond_anothers(srv, users):
    """eve holds all 3 GPUs, bob none: bob's low-priority session is within his fair share (half
    of the GPUs, between the two of them), so it is served as normal work and goes before eve's
    normal one queued earlier. His second low one would take him past his share: it waits its
    turn after eve's, as low priority does."""
    eve, bob = users["eve"], users["bob"]
    held = [start_session(eve, "-g", "1", *SMALL) for _ in range(3)]
    for name in held:
        running(srv, name)
    eves_next = start_session(eve, "-g", "1", *SMALL)
    bobs_low = start_session(bob, "-g", "1", "--priority", "low", *SMALL)
    assert positions(srv, 2) == {bobs_low: 1, eves_next: 2}
    open_gate(srv, held[0])
    running(srv, bobs_low)
    assert status(srv, eves_next)["status"] == "queued"
    bobs_second = start_session(bob, "-g", "1", "--priority", "low", *SMALL)  # 2 of 3 GPUs: beyond his half
    assert positions(srv, 2) == {eves_next: 1, bobs_second: 2}
    open_gate(srv, held[1])
    running(srv, eves_next)
    assert status(srv, bobs_second)["status"] == "queued"


def test_a_team_over_its_gpu_quota_waits_while_others_use_the_free_gpus(srv, users):
    carols = start_session(users["carol"], "-g", "1", "--team", "vision", *SMALL)
    running(srv, carols)
    daves = start_session(users["dave"], "-g", "1", "--team", "vision", *SMALL)
    eves = start_session(users["eve"], "-g", "1", *SMALL)
    running(srv, eves)  # a GPU was free for eve ...
    waiting = wait_for(lambda: (s := status(srv, daves))["queue_reason"] and s, "dave's reason")
    assert waiting["status"] == "queued"  # ... and for dave, but vision holds its 1
    assert "over team vision's GPU quota (1 of 1 in use, this asks for 1)" in waiting["queue_reason"]
    ps = users["dave"]("ps").stdout
    assert "quota" in ps
    open_gate(srv, carols)
    running(srv, daves)


def test_credits_hold_back_what_they_cannot_cover_and_limit_what_has_none(srv, users):
    frank = users["frank"]
    shown = frank("credit").stdout
    assert "User : frank  credit: 1" in shown and "frank: 1 of at most 1, +0 each 1d" in shown
    too_long = start_session(frank, "-g", "1", "--time-limit", "2m", *SMALL)
    reason = wait_for(lambda: status(srv, too_long)["queue_reason"], "the reason it waits")
    assert "frank's GPU credit (1) does not cover this session's 2 GPU-minutes" in reason
    srv.api.post(f"/api/sessions/{too_long}/stop")
    unlimited = start_session(frank, "-g", "1", *SMALL)
    s = running(srv, unlimited)
    assert s["time_limit"] is not None and 55 <= s["time_limit"] <= 60  # what 1 credit affords
    credit = as_user(srv, users, "frank").get("/api/credit").json()
    assert credit["balances"][0]["committed"] > 0  # the running session's promise
    open_gate(srv, unlimited)
    assert srv.wait(unlimited)["status"] == "exited"
    after = as_user(srv, users, "frank").get("/api/credit").json()
    assert after["enabled"] and after["credit"] < 1 and after["balances"][0]["committed"] == 0
    no_rule = as_user(srv, users, "bob").get("/api/credit").json()
    assert no_rule["enabled"] is False and "no credit rule applies" in no_rule["message"]


def test_usage_is_counted_per_user_and_team_and_read_by_its_holders(srv, users):
    carols = start_session(users["carol"], "-g", "1", "--team", "vision", *SMALL)
    running(srv, carols)
    open_gate(srv, carols)
    srv.wait(carols)
    carol = as_user(srv, users, "carol").get("/api/usage", params={"days": 2}).json()
    holders = {r["holder"]: r for r in carol["rows"]}
    assert set(holders) == {"carol", "team:vision"} and holders["carol"]["total"] > 0 and len(carol["days"]) == 2
    assert holders["team:vision"]["total"] >= holders["carol"]["total"]
    eve = as_user(srv, users, "eve")
    assert "carol" not in {r["holder"] for r in eve.get("/api/usage").json()["rows"]}
    denied = eve.get("/api/usage", params={"all": "true"})
    assert denied.status_code == 403 and "Only an admin" in denied.json()["detail"]
    everyone = {r["holder"] for r in srv.api.get("/api/usage", params={"all": "true"}).json()["rows"]}
    assert {"alice", "bob", "carol", "team:vision"} <= everyone
    table = users["carol"]("usage", "--days", "3").stdout
    assert "carol" in table and "team:vision" in table
    assert as_user(srv, users, "eve").get("/api/usage", params={"days": 0}).status_code == 422


def test_a_bad_policy_stops_the_server_with_a_clear_line(tmp_path):
    (tmp_path / "policy.yaml").write_text("order: random\n")
    with pytest.raises(RuntimeError) as failed:
        Server(tmp_path / "home", extra=["--policy", str(tmp_path / "policy.yaml")]).start()
    assert "nsml: " in str(failed.value) and "order must be one of fair, priority, fifo" in str(failed.value)


def test_a_preemptible_session_makes_way_and_resumes_from_its_checkpoint(srv, users, tmp_path):
    """alice's preemptible session fills every GPU; bob's regular one arrives: the scheduler
    pauses alice's through its bound save and queues it again (same name, next attempt); bob's
    runs, and once it is done alice's resumes from the checkpoint and loses no step."""
    from tests.cli.test_pause import HOLD as AT, STEPS, TRAIN, events, holding, steps

    trainer = Cli(users["alice"].env, write_project(tmp_path / "train", TRAIN))
    filler = start_session(trainer, "-g", "3", "--preemptible", *SMALL, "-a", f"--steps {STEPS} --hold-at {AT}")
    holding(srv, filler)
    regular = start_session(users["bob"], "-g", "1", *SMALL)
    back = wait_for(lambda: (s := status(srv, filler))["attempt"] == 2 and s, "the preempted session to be queued again")
    assert back["status"] in ("queued", "running") and back["preemptible"]
    history = events(srv, filler)
    assert any(note.startswith(f"preempted: {regular} needs its resources") for _, note in history), history
    assert any(st == "paused" and note.startswith("paused at checkpoint paused-") for st, note in history), history
    running(srv, regular)
    assert status(srv, filler)["status"] == "queued"  # bob holds a GPU: 3 are not free
    open_gate(srv, regular)
    assert srv.wait(regular)["status"] == "exited"
    done = srv.wait(filler)
    assert (done["status"], done["attempt"]) == ("exited", 2), done
    assert steps(srv, filler) == list(range(STEPS))  # every step exactly once over both attempts
    log = srv.api.get(f"/api/sessions/{filler}/logs").json()["text"]
    assert f"loaded: next step {AT + 1}" in log and "preempted: bob/" in log
