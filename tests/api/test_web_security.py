"""The dashboard's web hardening against a real server (nsml/server/web_security.py): a request
the login cookie authenticates must come from the server's own pages; bearer tokens are not
affected; every answer carries the security headers."""

import re

import httpx
import pytest

from nsml.server.auth import COOKIE
from tests.conftest import Cli, clean_env, push_dataset, serve_for_module, start_session, write_project

WAITS = "import time\nprint('up', flush=True)\nwhile True:\n    time.sleep(1)\n"
EVIL = "http://evil.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "websec")


@pytest.fixture(scope="module")
def running(server, tmp_path_factory) -> str:
    cli = Cli(clean_env(server.home), write_project(tmp_path_factory.mktemp("websec") / "code", WAITS))
    push_dataset(cli, "websec")
    name = start_session(cli, "-d", "websec", "-c", "1", "--memory", "1G")
    server.wait(name, ("running",))
    return name


def browser(server, **headers) -> httpx.Client:
    """What a browser holding the login cookie sends (no Authorization header)."""
    return httpx.Client(base_url=server.url, cookies={COOKIE: server.token}, headers=headers, timeout=30)


def test_a_cookie_post_from_another_site_is_refused_and_changes_nothing(server, running):
    for headers in [{"origin": EVIL}, {"origin": "null"}, {"referer": f"{EVIL}/page"}, {},
                    {"origin": server.url.replace("127.0.0.1", "localhost")}]:
        with browser(server, **headers) as c:
            resp = c.post(f"/api/sessions/{running}/stop")
            assert resp.status_code == 403, (headers, resp.text)
            detail = resp.json()["detail"]
            assert "login cookie" in detail, detail
            if not headers:
                assert "neither an Origin nor a Referer" in detail and "Bearer" in detail
            assert c.patch(f"/api/sessions/{running}/memo", json={"memo": "csrf"}).status_code == 403
            assert c.delete("/api/sessions", params={"pattern": running, "force": True}).status_code == 403
    info = server.session(running)
    assert info["status"] == "running" and info["memo"] == ""


def test_a_cookie_get_from_anywhere_still_reads(server, running):
    with browser(server, origin=EVIL) as c:  # reads change nothing; CORS keeps the answer from that site
        assert c.get(f"/api/sessions/{running}").status_code == 200


def test_bearer_requests_need_no_origin_and_win_over_the_cookie(server, running):
    assert server.api.patch(f"/api/sessions/{running}/memo", json={"memo": "cli"}).json()["memo"] == "cli"
    with httpx.Client(base_url=server.url, cookies={COOKIE: "stale"}, timeout=30,
                      headers={"Authorization": f"Bearer {server.token}", "origin": EVIL}) as c:
        assert c.patch(f"/api/sessions/{running}/memo", json={"memo": "script"}).status_code == 200


def test_the_login_form_refuses_another_sites_origin(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        resp = c.post("/login", data={"username": "alice", "password": "x"}, headers={"origin": EVIL})
        assert resp.status_code == 403 and "dashboard" in resp.json()["detail"]


def test_a_same_origin_cookie_request_works(server, running):
    with browser(server, origin=server.url) as c:
        assert c.patch(f"/api/sessions/{running}/memo", json={"memo": "web"}).json()["memo"] == "web"
    with browser(server, referer=f"{server.url}/sessions/{running}") as c:  # no Origin: the Referer decides
        assert c.patch(f"/api/sessions/{running}/memo", json={"memo": "web 2"}).json()["memo"] == "web 2"
    with browser(server, origin=server.url) as c:
        assert c.post(f"/api/sessions/{running}/stop").status_code == 200
    assert server.wait(running)["status"] == "stopped"


@pytest.mark.parametrize("path", ["/api/health", "/api/whoami", "/api/datasets/none", "/", "/compare", "/login",
                                  "/static/core.js", "/static/theme.js", "/openapi.json", "/nowhere"])
def test_every_answer_carries_the_security_headers(server, path):
    resp = httpx.get(f"{server.url}{path}", timeout=30)  # no token: 200s, a 401, 404s
    h = resp.headers
    csp = dict(part.strip().split(" ", 1) for part in h["content-security-policy"].split(";"))
    assert csp["script-src"] == "'self'" and csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert (h["x-frame-options"], h["x-content-type-options"], h["referrer-policy"]) == ("DENY", "nosniff", "same-origin")


def test_pages_hold_no_inline_script(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for path in ["/", "/sessions/alice/x/1", "/login"]:
            scripts = re.findall(r"<script\b[^>]*>", c.get(path).text)
            assert all("src=" in tag for tag in scripts), (path, scripts)
            assert not re.search(r"\son[a-z]+=", c.get(path).text), path  # no inline event handlers either
