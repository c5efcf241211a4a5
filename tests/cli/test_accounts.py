"""`nsml user | team | token | audit`, `nsml login --user`, `run --team/--visibility` and
`dataset change -u/-t` against a real server, through the real CLI: alice is the server's own
user (its admin), bob a user she adds."""

import json
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import httpx
import pytest

from tests.conftest import Cli, check_failed, clean_env, serve_for_module, start_session, write_dataset, write_project

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "accounts")


def user_cli(home, folder, name: str, **env) -> Cli:
    folder.mkdir(parents=True, exist_ok=True)
    return Cli({**clean_env(home), "USER": name, "LOGNAME": name, **env}, folder)


@pytest.fixture(scope="module")
def people(server, tmp_path_factory):
    """alice (admin, the server's home) adds bob with a password; bob logs in with it."""
    root = tmp_path_factory.mktemp("people")
    alice = user_cli(server.home, root / "alice", "alice")
    bob = user_cli(root / "bob-home", root / "bob", "bob")
    added = alice("user", "add", "bob", "--password", input=f"{PASSWORD}\n")
    login = bob("login", server.url, "--user", "bob", input=f"{PASSWORD}\n")
    return SimpleNamespace(alice=alice, bob=bob, added=added, login=login, root=root)


def failures(*calls) -> list[str]:
    """Commands that must fail with one `nsml: ...` line each, run side by side: (cli, args, input)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        procs = list(pool.map(lambda c: c[0](*c[1], input=c[2] if len(c) > 2 else "", check=False), calls))
    return [check_failed(p) for p in procs]


def as_json(proc) -> list | dict:
    return json.loads(proc.stdout)


def test_an_admin_adds_a_user_who_logs_in_with_a_password(server, people):
    out = people.added.stdout
    assert out.splitlines()[0] == "User bob is added"
    first_token = next(ln for ln in out.splitlines() if ln.startswith("Their token, shown only this once: ")).split()[-1]
    assert f"nsml login {server.url} --user bob" in out and f"nsml login {server.url} --token {first_token}" in out
    whoami = httpx.get(server.url + "/api/whoami", headers={"Authorization": f"Bearer {first_token}"}).json()
    assert whoami["user"] == "bob"

    lines = people.login.stdout.splitlines()
    assert lines[0] == f"Welcome to NSML, bob! Commands now use {server.url}"
    assert lines[1].startswith("This login expires in 90 days")
    config = people.bob.cwd.parent / "bob-home" / "config.json"
    stored = json.loads(config.read_text())
    assert stored["url"] == server.url and stored["token"] not in ("", first_token)
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    alice, bob = people.alice, people.bob
    scratch = user_cli(people.root / "scratch-home", people.root / "scratch", "bob")
    wrong, empty, neither, not_admin, no_audit, exists, add_as_bob, myself = failures(
        (scratch, ("login", server.url, "--user", "bob"), "not the password\n"),
        (scratch, ("login", server.url, "--user", "bob")),
        (scratch, ("login", server.url)),
        (bob, ("user", "ls")),
        (bob, ("audit",)),
        (alice, ("user", "add", "bob")),
        (bob, ("user", "add", "carol")),
        (alice, ("user", "rm", "alice")),
    )
    assert wrong == "nsml: Wrong username or password."
    assert "no terminal" in empty.lower() and "password" in empty
    assert "no terminal" in neither and "--user NAME" in neither and "--token TOKEN" in neither
    assert not_admin == "nsml: Only an admin may list users."
    assert no_audit == "nsml: Only an admin may read the audit table."
    assert "bob" in exists and add_as_bob == "nsml: Only an admin may add users."
    assert "cannot remove yourself" in myself
    assert not (people.root / "scratch-home" / "config.json").exists()  # failed logins keep nothing

    users = {u["name"]: u for u in as_json(alice("user", "ls", "-j"))}
    assert users["alice"]["admin"] and not users["bob"]["admin"] and users["bob"]["has_password"]
    table = alice("user", "ls").stdout
    assert "Default Team" in table and any(row.split()[0] == "bob" for row in table.splitlines()[1:] if row.strip())

    # bob changes his own password (asked twice on a terminal; stdin's first line here) and logs in with it
    assert bob("user", "passwd", input="a new one entirely\n").stdout.strip() == "Password of bob is set"
    again = scratch("login", server.url, "-u", "bob", input="a new one entirely\n").stdout
    assert again.startswith("Welcome to NSML, bob!")
    assert check_failed(scratch("login", server.url, "--user", "bob", input=f"{PASSWORD}\n", check=False)) == "nsml: Wrong username or password."


def test_a_removed_users_tokens_stop_working(server, people):
    made = as_json(people.alice("user", "add", "carol", "-j"))
    assert made["user"] == "carol" and made["token"]
    carol = user_cli(people.root / "carol-home", people.root / "carol", "carol",
                     NSML_SERVER_URL=server.url, NSML_TOKEN=made["token"])
    assert carol("dataset", "ls", "-j").stdout.strip() == "[]"
    assert people.alice("user", "rm", "carol").stdout.strip() == "User carol is removed"
    # within the server's token cache period (nsml.server.auth.CACHE_SECONDS); polled over HTTP,
    # since `user rm` does not empty that cache as `token revoke` does
    deadline = time.monotonic() + 15
    while httpx.get(server.url + "/api/whoami", headers={"Authorization": f"Bearer {made['token']}"}).status_code == 200:
        assert time.monotonic() < deadline, "a removed user's token still works"
        time.sleep(0.2)
    line = check_failed(carol("dataset", "ls", check=False))
    assert "token is not valid" in line


def test_team_members_read_team_sessions_but_not_private_ones(server, people):
    alice, bob = people.alice, people.bob
    assert alice("team", "add", "vision").stdout.startswith("Team vision is added")
    assert alice("team", "join", "vision", "bob").stdout.strip() == "User bob is in team vision (members: alice, bob)"
    teams = {t["name"]: t for t in as_json(bob("team", "ls", "-j"))}
    assert teams["vision"]["owner"] == "alice" and sorted(teams["vision"]["members"]) == ["alice", "bob"]
    assert "vision" in bob("team", "ls").stdout

    write_project(alice.cwd, "print('hi')\n")
    write_project(bob.cwd, "print('hi')\n")
    shared = start_session(alice, "--team", "vision")
    private = start_session(alice, "--visibility", "private")
    public = start_session(alice, "--visibility", "public")
    not_owner, bad_visibility, not_member, hidden = failures(
        (bob, ("team", "join", "vision", "carol")),
        (alice, ("run", "--visibility", "secret")),
        (bob, ("run", "--team", "nope")),
        (bob, ("logs", private)),
    )
    assert not_owner == "nsml: Only team vision's owner (alice) or an admin may add members."
    assert bad_visibility == "nsml: Visibility must be one of private, team, public, not 'secret'."
    assert "not a member of team 'nope'" in not_member and "vision" in not_member
    assert "does not exist" in hidden

    seen = {s["name"] for s in as_json(bob("ps", "-a", "-j"))}
    assert shared in seen and public in seen and private not in seen
    assert {shared, private, public} <= {s["name"] for s in as_json(alice("ps", "-a", "-j"))}


def test_a_private_dataset_granted_to_a_user_and_revoked(server, people):
    alice, bob = people.alice, people.bob
    alice("dataset", "push", "secret", write_dataset(people.root / "ds-secret"), "--private")

    def bob_sees() -> bool:
        return "secret" in {d["name"] for d in as_json(bob("dataset", "ls", "-j"))}

    assert not bob_sees()
    assert alice("dataset", "change", "secret", "-u", "bob").stdout.strip() == "Dataset secret: user:bob may read it (granted: user:bob)"
    assert bob_sees()
    out = alice("dataset", "change", "secret", "-u", "bob", "--revoke").stdout.strip()
    assert out == "Dataset secret: user:bob may no longer read it (granted: nobody)"
    assert not bob_sees()

    no_grantee, not_owner = failures(
        (alice, ("dataset", "change", "secret", "--revoke")),
        (bob, ("dataset", "change", "secret", "-u", "bob")),
    )
    assert "-u USER or -t TEAM" in no_grantee
    assert "secret" in not_owner


def test_tokens_are_made_listed_and_revoked(server, people):
    bob = people.bob
    lines = bob("token", "new", "--label", "ci", "--days", "1").stdout.splitlines()
    assert lines[0].startswith("Token ") and lines[0].endswith(" (ci) expires in 1 day; it is shown only this once:")
    token_id, token = int(lines[0].split()[1]), lines[1]
    assert f"NSML_SERVER_URL={server.url}" in lines[2]
    ci = user_cli(people.root / "ci-home", people.root / "ci", "bob", NSML_SERVER_URL=server.url, NSML_TOKEN=token)
    ci("dataset", "ls")

    listed = {t["id"]: t for t in as_json(bob("token", "ls", "-j"))}
    assert listed[token_id]["label"] == "ci" and listed[token_id]["revoked"] is None and listed[token_id]["expires"]
    assert "first" in {t["label"] for t in listed.values()}  # the token `user add` made
    row = next(r for r in bob("token", "ls").stdout.splitlines() if r.split()[:2] == [str(token_id), "ci"])
    assert "in 1 day" in row and row.rstrip().endswith("active")

    assert bob("token", "revoke", str(token_id)).stdout.strip() == f"Token {token_id} (ci) is revoked"
    revoked, unknown = failures((ci, ("dataset", "ls")), (bob, ("token", "revoke", "99999")))
    assert "token is not valid" in revoked
    assert "99999" in unknown or "not" in unknown
    assert {t["id"]: t for t in as_json(bob("token", "ls", "-j"))}[token_id]["revoked"] is not None
    forever = bob("token", "new").stdout.splitlines()[0]
    assert forever.endswith(" never expires; it is shown only this once:")


def test_the_audit_table_shows_logins_grants_and_stops(server, people):
    alice = people.alice
    alice("dataset", "push", "audited", write_dataset(people.root / "ds-audited"), "--private")
    alice("dataset", "change", "audited", "-u", "bob")
    write_project(people.root / "sleepy", "import time\ntime.sleep(120)\n")
    name = start_session(alice, cwd=people.root / "sleepy")
    server.wait(name, statuses=("running",))
    alice("stop", name)

    entries = as_json(alice("audit", "-j"))
    by_action = {}
    for e in entries:
        by_action.setdefault(e["action"], []).append(e)
    assert {"login", "grant", "stop", "user add"} <= set(by_action)
    assert any(e["actor"] == "bob" and e["target"] == "bob" for e in by_action["login"])
    assert any(e["target"] == "audited" and e["detail"] == "user:bob" for e in by_action["grant"])
    assert any(e["target"] == name for e in by_action["stop"])
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)  # newest first

    only_bob = as_json(alice("audit", "--user", "bob", "-j"))
    assert only_bob and {e["actor"] for e in only_bob} == {"bob"}
    table = alice("audit", "--action", "login", "-n", "2").stdout.splitlines()
    rows = [r for r in table[2:] if r.strip()]
    assert table[0].split() == ["When", "User", "Action", "Target", "Detail"]
    assert 1 <= len(rows) <= 2 and all(" login " in f" {r} " for r in rows)
