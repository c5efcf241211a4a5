"""A session's scoped credential (nsml.core.credentials), taken from a live session's spec.json as
an attacker who got hold of it would, is worth nothing beyond its own supervisor's calls: every
user route (identity, tokens, audit, other sessions, datasets, the web) refuses it, and the
supervisor routes refuse it for any session but its own. Each route of the app is tried, so a
route added later is tried too."""

import json
import re

import httpx
import pytest

from nsml.server import auth
from tests.api.test_policy_routes import SUPERVISOR_DEPS, api_routes, dependencies
from tests.conftest import Cli, clean_env, open_gate, run_dir, serve_for_module, tar_of

GATED = b"import os, time\nwhile not os.path.exists('gate'):\n    time.sleep(0.1)\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "scoped")


def started(server, dataset: str) -> str:
    resp = server.api.post("/api/sessions", params={"dataset": dataset}, content=tar_of({"main.py": GATED}))
    assert resp.status_code == 201, resp.text
    return resp.json()["name"]


@pytest.fixture(scope="module")
def world(server, tmp_path_factory):
    api = server.api
    data = tmp_path_factory.mktemp("scoped-data")
    (data / "train").mkdir()
    (data / "train" / "x").write_text("1\n")
    cli = Cli({**clean_env(server.home), "NSML_SERVER_URL": server.url, "NSML_TOKEN": server.token}, data)
    cli("dataset", "push", "scoped", data)
    cli("dataset", "push", "hidden", data, "--private")
    mine, other = started(server, "scoped"), started(server, "scoped")
    token = json.loads((run_dir(server, mine) / "spec.json").read_text())["token"]
    assert token.startswith("nsml-s."), "the supervisor's credential is a scoped one"
    assert api.post("/api/users", json={"name": "bob"}).status_code == 201
    yield {"token": token, "mine": mine, "other": other}
    open_gate(server, mine, other)
    server.wait(mine), server.wait(other)


def filled(path: str, session: str) -> str:
    owner, dataset, number = session.split("/")
    values = {"owner": owner, "dataset": dataset, "number": number, "name": "hidden", "team": "lab", "user": "bob",
              "token_id": "1", "checkpoint": "1", "file": "main.py", "path": "main.py", "metric": "loss"}
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


def test_a_sessions_credential_opens_no_user_route(server, world):
    """Every /api route but the supervisor's: 401 with the scoped-credential message, or a
    refusal that reveals nothing (404) where the route reads on the owner's behalf."""
    scoped = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {world['token']}"}, timeout=30)
    let_in, tried = [], 0
    for route in api_routes():
        if dependencies(route.dependant) & SUPERVISOR_DEPS or route.path in ("/api/health", "/api/login"):
            continue
        for method in route.methods - {"HEAD"}:
            url = filled(route.path, world["other"])
            resp = scoped.request(method, url, json={})
            tried += 1
            if auth.caller in dependencies(route.dependant):
                # A supervisor reads a checkpoint its owner may read (nsml.load(session=...)); this
                # server's one user owns `other`, so the policy lets it, and nothing else.
                if resp.status_code not in (401, 403, 404, 409):
                    let_in.append(f"{method} {url}: {resp.status_code}")
                continue
            if resp.status_code != 401 or "supervisor's calls only" not in resp.json()["detail"]:
                let_in.append(f"{method} {url}: {resp.status_code} {resp.text[:120]}")
    assert tried > 40
    assert let_in == [], f"routes that took a session's credential as a user's: {let_in}"


def test_a_sessions_credential_opens_no_other_sessions_supervisor_routes(server, world):
    scoped = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {world['token']}"}, timeout=30)
    let_in, tried = [], 0
    for route in api_routes():
        if not dependencies(route.dependant) & SUPERVISOR_DEPS:
            continue
        for method in route.methods - {"HEAD"}:
            url = filled(route.path, world["other"])
            resp = scoped.request(method, url, json={})
            tried += 1
            if resp.status_code != 403 or "belong to session" not in resp.json()["detail"]:
                let_in.append(f"{method} {url}: {resp.status_code} {resp.text[:120]}")
    assert tried >= 5
    assert let_in == [], f"supervisor routes that took another session's credential: {let_in}"


def test_a_sessions_credential_as_the_browsers_cookie_reads_nothing(server, world):
    """The pages are shells that hold no data (nsml.server.web.pages); what their scripts fetch
    with the cookie is refused like the bearer header."""
    browser = httpx.Client(base_url=server.url, cookies={auth.COOKIE: world["token"]}, timeout=30)
    for url in ("/api/sessions", f"/api/sessions/{world['other']}/logs", "/api/datasets", "/api/users/me", "/api/audit"):
        resp = browser.get(url)
        assert resp.status_code == 401 and "supervisor's calls only" in resp.json()["detail"], (url, resp.text)
