"""The policy across every session, dataset, checkpoint, board and web route, against a real
server with four real users: alice (the server's own user: its admin), bob (who owns the
sessions and datasets), carol (in bob's team `vision`) and eve (in no team of bob's).

A refusal for what one may not even read is a 404 that reads like a missing name; for what one
reads but may not change, a 403. Allowed calls are checked for not being refused by the policy
(some of them then fail for their own reasons, e.g. `stop` of an exited session is a 409)."""

import shutil

import httpx
import pytest

from tests.cli.test_relaunch import PROJECT, write_board_dataset
from tests.conftest import Cli, clean_env, serve_for_module, start_session, tar_of


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "two-users")


def client(server, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    alice = server.api
    tokens = {}
    for name in ("bob", "carol", "eve"):
        resp = alice.post("/api/users", json={"name": name})
        assert resp.status_code == 201, resp.text
        tokens[name] = resp.json()["token"]
    bob, carol, eve = (client(server, tokens[n]) for n in ("bob", "carol", "eve"))
    assert bob.post("/api/teams", json={"name": "vision"}).status_code == 201
    assert bob.post("/api/teams/vision/members", json={"user": "carol"}).status_code == 200
    assert eve.post("/api/teams", json={"name": "nlp"}).status_code == 201

    work = tmp_path_factory.mktemp("two-users-work")
    shutil.copytree(PROJECT, work, dirs_exist_ok=True)
    bobs_cli = Cli({**clean_env(server.home), "NSML_SERVER_URL": server.url, "NSML_TOKEN": tokens["bob"]}, work)
    data = write_board_dataset(work.parent / "board-data")
    bobs_cli("dataset", "push", "bobdata", data, "--leaderboard")
    bobs_cli("dataset", "push", "bobsecret", data, "--private")
    team_session = start_session(bobs_cli, "-d", "bobdata")  # default: team vision, team-visible
    assert server.wait(team_session)["status"] == "exited"
    code = tar_of({"main.py": (PROJECT / "main.py").read_bytes()})
    resp = bob.post("/api/sessions", params={"dataset": "bobdata", "visibility": "private"}, content=code)
    assert resp.status_code == 201, resp.text
    private_session = resp.json()["name"]
    server.wait(private_session)
    return {"alice": alice, "bob": bob, "carol": carol, "eve": eve, "team": team_session,
            "private": private_session, "tokens": tokens}


def hidden(resp, name: str) -> bool:
    """The policy's 404: the name reads as missing."""
    return resp.status_code == 404 and resp.json()["detail"].startswith(f"Session '{name}' does not exist.")


def refused(resp) -> bool:
    return resp.status_code == 403 and "only they or an admin may do that" in resp.json()["detail"]


def read_calls(s: str) -> list[tuple[str, str, dict]]:
    return [
        ("GET", f"/api/sessions/{s}", {}), ("GET", f"/api/sessions/{s}/logs", {}), ("GET", f"/api/sessions/{s}/code", {}),
        ("GET", f"/api/sessions/{s}/outputs", {}), ("GET", f"/api/sessions/{s}/checkpoints", {}),
        ("GET", f"/api/sessions/{s}/checkpoints/1/archive", {}), ("GET", f"/api/sessions/{s}/metrics", {}),
        ("GET", f"/api/sessions/{s}/metrics/train__loss", {}), ("GET", f"/api/web/sessions/{s}/info", {}),
    ]


def control_calls(s: str) -> list[tuple[str, str, dict]]:
    """Each would change the session or spend its owner's resources; only refusals are sent."""
    return [
        ("POST", f"/api/sessions/{s}/stop", {}), ("PATCH", f"/api/sessions/{s}/memo", {"json": {"memo": "mine now"}}),
        ("DELETE", f"/api/sessions/{s}/checkpoints", {"params": {"pattern": "*"}}),
        ("POST", f"/api/sessions/{s}/fork", {}), ("POST", f"/api/sessions/{s}/resume", {}),
        ("POST", f"/api/sessions/{s}/pause", {}),
        ("POST", f"/api/sessions/{s}/submit", {"params": {"checkpoint": "1"}}),
        ("POST", f"/api/sessions/{s}/infer-session", {}), ("POST", f"/api/sessions/{s}/infer", {"json": {"data": [1]}}),
        ("POST", f"/api/sessions/{s}/exec", {"json": {"code": "1"}}), ("POST", f"/api/sessions/{s}/sh", {"json": {"command": "id"}}),
        ("DELETE", "/api/sessions", {"params": {"pattern": [s]}}),
    ]


def test_a_stranger_finds_nothing_of_a_team_session(world):
    s, eve = world["team"], world["eve"]
    for method, path, kw in read_calls(s) + control_calls(s):
        resp = eve.request(method, path, **kw)
        assert hidden(resp, s), (method, path, resp.status_code, resp.text)
    assert s not in {x["name"] for x in eve.get("/api/sessions", params={"all": True}).json()}
    assert s not in {x["name"] for x in eve.get("/api/web/sessions").json()["sessions"]}
    assert eve.get("/api/web/graph", params={"s": [s]}).json()["missing"] == [s]
    assert eve.get("/api/web/diff", params={"a": s, "b": s}).status_code == 404
    # "did you mean" draws only on what eve may read
    number = int(s.rsplit("/", 1)[1])
    near = f"{s.rsplit('/', 1)[0]}/{number + 100}"
    resp = eve.get(f"/api/sessions/{near}")
    assert resp.status_code == 404 and resp.json()["detail"] == f"Session '{near}' does not exist."
    resp = world["bob"].get(f"/api/sessions/{near}")  # its owner is shown the close names
    assert resp.status_code == 404 and s in resp.json()["detail"]


def test_a_team_member_reads_a_team_session_but_changes_nothing(world):
    s, carol, bob = world["team"], world["carol"], world["bob"]
    for method, path, kw in read_calls(s):
        resp = carol.request(method, path, **kw)
        assert resp.status_code == 200, (method, path, resp.status_code, resp.text)
    for method, path, kw in control_calls(s):
        resp = carol.request(method, path, **kw)
        assert refused(resp), (method, path, resp.status_code, resp.text)
    assert bob.get(f"/api/sessions/{s}").json()["memo"] == ""  # nothing changed
    assert len(bob.get(f"/api/sessions/{s}/checkpoints").json()) > 0
    assert s in {x["name"] for x in carol.get("/api/sessions", params={"all": True}).json()}
    assert carol.get("/api/web/diff", params={"a": s, "b": s}).status_code == 200


def test_a_private_session_is_its_owners_and_the_admins(world):
    p = world["private"]
    for who in ("carol", "eve"):
        assert hidden(world[who].get(f"/api/sessions/{p}"), p), who
        assert p not in {x["name"] for x in world[who].get("/api/sessions", params={"all": True}).json()}
    for who in ("bob", "alice"):
        assert world[who].get(f"/api/sessions/{p}").status_code == 200, who
        assert p in {x["name"] for x in world[who].get("/api/sessions", params={"all": True}).json()}


def test_owner_and_admin_pass_the_policy(world):
    s = world["team"]
    for who in ("bob", "alice"):
        for method, path, kw in read_calls(s):
            assert world[who].request(method, path, **kw).status_code == 200, (who, path)
        resp = world[who].patch(f"/api/sessions/{s}/memo", json={"memo": f"by {who}"})
        assert resp.status_code == 200 and resp.json()["memo"] == f"by {who}"
        resp = world[who].post(f"/api/sessions/{s}/stop")  # allowed, but it has exited
        assert resp.status_code == 409, resp.text
    entries = world["alice"].get("/api/audit", params={"action": "stop"}).json()
    assert entries == [] or all(e["target"] == s for e in entries)


def test_datasets_private_grants_and_changes(world):
    alice, bob, carol, eve = world["alice"], world["bob"], world["carol"], world["eve"]
    for who in (carol, eve):
        resp = who.get("/api/datasets/bobsecret")
        assert resp.status_code == 404 and resp.json()["detail"].startswith("Dataset 'bobsecret' does not exist.")
        assert "bobsecret" not in {d["name"] for d in who.get("/api/datasets").json()}
    assert eve.post("/api/datasets/bobsecret/grants", json={"user": "eve"}).status_code == 404
    assert carol.post("/api/datasets/bobdata/grants", json={"user": "carol"}).status_code == 403
    assert bob.post("/api/datasets/bobsecret/grants", json={"team": "vision"}).json() == ["team:vision"]
    assert carol.get("/api/datasets/bobsecret").status_code == 200
    assert eve.get("/api/datasets/bobsecret").status_code == 404
    # a granted reader pulls the training split, never the hidden test split
    names = carol.get("/api/datasets/bobsecret/archive").headers["X-NSML-Files"]
    assert int(names) == 1
    bob.post("/api/datasets/bobsecret/grants", json={"team": "vision", "revoke": True})
    assert carol.get("/api/datasets/bobsecret").status_code == 404
    # a public dataset: read and its board shown to everyone, changed by its owner or an admin only
    assert eve.get("/api/datasets/bobdata/board").status_code == 200
    for method, path, kw in [("PATCH", "/api/datasets/bobdata", {"json": {"description": "eve's"}}),
                             ("DELETE", "/api/datasets/bobdata", {}),
                             ("POST", "/api/datasets/bobdata", {"params": {"force": True}, "content": tar_of({"train/x": b"1"})})]:
        resp = eve.request(method, path, **kw)
        assert resp.status_code == 403, (method, path, resp.text)
    assert alice.patch("/api/datasets/bobdata", json={"description": "by the admin"}).status_code == 200
    assert bob.get("/api/datasets/bobdata").json()["description"] == "by the admin"
    grants = [e for e in alice.get("/api/audit", params={"action": "grant"}).json()]
    assert grants and grants[0]["actor"] == "bob" and grants[0]["target"] == "bobsecret"


def test_users_teams_tokens_and_logins(world, server):
    alice, bob, carol, eve = world["alice"], world["bob"], world["carol"], world["eve"]
    assert carol.get("/api/users").status_code == 403
    assert carol.get("/api/audit").status_code == 403
    assert carol.post("/api/users", json={"name": "mallory"}).status_code == 403
    assert eve.post("/api/teams/vision/members", json={"user": "eve"}).status_code == 403
    assert "vision" not in eve.get("/api/users/me").json()["teams"]
    assert {u["name"] for u in alice.get("/api/users").json()} == {"alice", "bob", "carol", "eve"}
    # a password login gives a token that works
    assert bob.put("/api/users/bob/password", json={"password": "correct horse"}).status_code == 200
    assert carol.put("/api/users/bob/password", json={"password": "carol's now"}).status_code == 403
    wrong = httpx.post(server.url + "/api/login", json={"username": "bob", "password": "wrong horse"})
    nobody = httpx.post(server.url + "/api/login", json={"username": "nobody", "password": "wrong horse"})
    assert wrong.status_code == nobody.status_code == 401 and wrong.json()["detail"] == nobody.json()["detail"]
    resp = httpx.post(server.url + "/api/login", json={"username": "bob", "password": "correct horse"})
    assert resp.status_code == 200, resp.text
    logged_in = client(server, resp.json()["token"])
    assert logged_in.get("/api/whoami").json()["user"] == "bob"
    # a revoked token stops working
    made = bob.post("/api/tokens", json={"label": "laptop", "days": 1}).json()
    laptop = client(server, made["token"])
    assert laptop.get("/api/whoami").status_code == 200
    assert bob.delete(f"/api/tokens/{made['id']}").json()["revoked"] is not None
    assert laptop.get("/api/whoami").status_code == 401
    assert eve.delete(f"/api/tokens/{made['id']}").status_code == 404  # not eve's
    listed = bob.get("/api/tokens").json()
    assert {t["label"] for t in listed} >= {"first", "laptop", "login"} and all("token" not in t for t in listed)
    actions = {e["action"] for e in alice.get("/api/audit", params={"limit": 1000}).json()}
    assert {"user add", "team add", "team join", "login", "login failed", "token revoke", "password", "token use"} <= actions


def test_whoami_says_who_is_an_admin_and_in_which_teams(world):
    """What the web's admin-only links read: alice is the server's admin, carol is in vision."""
    me = {who: world[who].get("/api/whoami").json() for who in ("alice", "bob", "carol", "eve")}
    assert [me[w]["admin"] for w in ("alice", "bob", "carol", "eve")] == [True, False, False, False]
    assert me["carol"]["teams"] == ["vision"] and "vision" in me["bob"]["teams"] and me["eve"]["teams"] == ["nlp"]
