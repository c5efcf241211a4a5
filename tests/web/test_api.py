"""The dashboard's JSON twins, login cookie and static files, against a real server."""

import httpx
import pytest

from nsml.core.entities import UsageSample
from nsml.scheduler.usage import zombie_gpus
from nsml.server.web.compare import parse_args, side_by_side, split_args
from tests.conftest import push_dataset, start_session, write_project

from .conftest import TRAIN


@pytest.fixture(scope="module")
def two(srv, wcli):
    """Two finished sessions of dataset webapi: different -a and one changed line of code."""
    push_dataset(wcli, "webapi")
    a = start_session(wcli, "-d", "webapi", "-a", "--lr 0.1 --epochs 3", "-m", "baseline run")
    other = write_project(wcli.cwd.parent / "code2", TRAIN.replace("loss = 1.0 / (step + 1)", "loss = 2.0 / (step + 1)"))
    b = start_session(wcli, "-d", "webapi", "-a", "--lr 0.2 --epochs 3", cwd=other)
    srv.wait(a)
    srv.wait(b)
    return a, b


def test_login_sets_an_httponly_strict_cookie_that_authenticates_api_calls(srv):
    with httpx.Client(base_url=srv.url) as c:
        assert c.get("/api/whoami").status_code == 401
        assert c.get("/login", params={"token": "wrong"}).status_code == 401
        resp = c.get("/login", params={"token": srv.token, "next": "/resources"})
        assert resp.status_code == 303 and resp.headers["location"] == "/resources"
        cookie = resp.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/api/whoami").json()["user"] == "alice"  # the cookie alone is enough
    with httpx.Client(base_url=srv.url) as c:  # never redirect to another site
        assert c.get("/login", params={"token": srv.token, "next": "//evil.example/x"}).headers["location"] == "/"


def test_pages_are_one_shell_with_versioned_static_files_cached_for_a_year(srv):
    with httpx.Client(base_url=srv.url) as c:
        for path in ["/", "/datasets/x", "/sessions/alice/x/1", "/compare", "/diff", "/resources"]:
            resp = c.get(path)
            assert resp.status_code == 200 and "plotly.min.js?v=" in resp.text, path
        js = c.get("/static/plotly.min.js", headers={"accept-encoding": "gzip"})
        assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
        assert js.headers["content-encoding"] == "gzip" and "plotly" in js.text[:2000].lower()
        assert c.get("/static/app.css").headers["content-type"].startswith("text/css")
        assert c.get("/static/..%2Fpages.py").status_code == 404


def test_search_matches_name_memo_and_args_with_filters_and_pages(srv, two):
    a, b = two
    api = srv.api
    found = api.get("/api/web/sessions", params={"q": "--lr 0.2"}).json()
    assert [s["name"] for s in found["sessions"]] == [b] and found["total"] == 1
    assert [s["name"] for s in api.get("/api/web/sessions", params={"q": "BASELINE"}).json()["sessions"]] == [a]
    by_dataset = api.get("/api/web/sessions", params={"dataset": "webapi", "limit": 1}).json()
    assert by_dataset["total"] == 2 and [s["name"] for s in by_dataset["sessions"]] == [b]  # newest first
    assert api.get("/api/web/sessions", params={"dataset": "webapi", "status": "running"}).json()["total"] == 0
    assert api.get("/api/web/sessions", params={"status": "bogus"}).status_code == 400


def test_graph_overlays_sessions_with_common_and_differing_args(srv, two):
    a, b = two
    g = srv.api.get("/api/web/graph", params={"s": [a, b, "alice/webapi/99"], "x": "step"}).json()
    assert g["missing"] == ["alice/webapi/99"]
    assert {"train/loss", "val/acc", "train/loss@std"} <= set(g["keys"])
    assert g["args"] == {"common": {"epochs": "3"}, "differing": ["lr"]}
    line = g["series"][a]["train/loss"]
    assert line["x"] == [0, 1, 2] and line["y"][0] == pytest.approx(1.1) and line["exact"]
    zoomed = srv.api.get("/api/web/graph", params={"s": [a], "xmin": 1, "xmax": 2}).json()
    assert zoomed["series"][a]["train/loss"]["x"] == [1, 2]
    rel = srv.api.get("/api/web/graph", params={"s": [a], "x": "relative"}).json()["series"][a]["train/loss"]
    assert rel["x"][0] == pytest.approx(0, abs=1e-6)
    assert srv.api.get("/api/web/graph", params={"s": [a], "x": "epoch"}).status_code == 400


def test_info_has_status_history_params_and_usage(srv, two):
    a, _ = two
    info = srv.api.get(f"/api/web/sessions/{a}/info").json()
    assert info["session"]["name"] == a and info["params"] == {"lr": "0.1", "epochs": "3"}
    assert [e["status"] for e in info["events"]][:1] == ["queued"] and info["events"][-1]["status"] == "exited"
    assert set(info["usage"]) == {"at", "cpu", "memory", "gpus", "final"} and info["zombie"] == []
    assert info["usage"]["final"][-1:] == [True]  # the run's end sample, from its supervisor's exit report


def test_diff_shows_changed_code_side_by_side_and_differing_args(srv, two):
    a, b = two
    d = srv.api.get("/api/web/diff", params={"a": a, "b": b}).json()
    main = next(f for f in d["files"] if f["path"] == "main.py")
    assert main["status"] == "changed"
    changed = [r for r in main["rows"] if r["t"] != "eq" and r["t"] != "skip"]
    assert changed and "1.0 / (step + 1)" in changed[0]["l"][1] and "2.0 / (step + 1)" in changed[0]["r"][1]
    assert {r["key"]: r["same"] for r in d["args"]} == {"epochs": True, "lr": False}
    assert srv.api.get("/api/web/diff", params={"a": a, "b": "alice/webapi/77"}).status_code == 404


def test_resources_say_who_holds_what_and_the_queue(srv):
    r = srv.api.get("/api/resources").json()
    assert {"capacity", "used", "gpus", "holders", "owners", "queue", "running", "queued"} <= set(r)
    assert r["capacity"]["cpus"] == 64


def test_args_are_parsed_as_key_value_pairs():
    assert parse_args("--lr 0.1 --flag --name=x -b -3 data.txt") == {"lr": "0.1", "flag": "true", "name": "x", "b": "-3", "_": "data.txt"}
    assert split_args([{"lr": "1", "bs": "8"}, {"lr": "2", "bs": "8"}, {"bs": "8"}]) == {"common": {"bs": "8"}, "differing": ["lr"]}


def test_side_by_side_folds_long_unchanged_stretches():
    left = [f"line {i}" for i in range(20)]
    right = left[:10] + ["new"] + left[11:]
    rows = side_by_side(left, right, context=2)
    assert [r["t"] for r in rows] == ["skip", "eq", "eq", "rep", "eq", "eq", "skip"]
    assert rows[0]["n"] == 8 and rows[3]["l"] == [11, "line 10"] and rows[3]["r"] == [11, "new"]


def test_a_gpu_idle_for_an_hour_is_a_zombie():
    samples = [UsageSample(t, 10.0, 1, [{"index": 0, "util": 0}, {"index": 1, "util": 50 if t < 600 else 0}])
               for t in range(0, 3600 + 61, 60)]
    assert zombie_gpus(samples, 3600) == [0]
    assert zombie_gpus(samples[:10], 3600) == []
    assert zombie_gpus(samples, 1800) == [0, 1]  # a shorter threshold: the second went idle at 600 s


def test_nsml_web_prints_a_login_link_that_opens_the_dashboard(srv, wcli, two):
    a, _ = two
    out = wcli("web", "--no-browser", a).stdout
    link = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Login link"))
    assert f"Dashboard: {srv.url}/sessions/{a}" in out
    with httpx.Client(follow_redirects=True) as c:
        page = c.get(link)
        assert page.status_code == 200 and str(page.url) == f"{srv.url}/sessions/{a}" and 'data-page="session"' in page.text
        assert c.get(f"{srv.url}/api/web/sessions/{a}/info").status_code == 200


def test_info_returns_usage_over_time_per_gpu(srv, two):
    from nsml.store.sql import open_store

    _, b = two
    store = open_store(f"sqlite:///{srv.home / 'nsml.db'}")  # what the executor's sampler writes
    try:
        sid = store.get_session(b).id
        for t in range(3):
            store.add_usage(sid, 1000.0 + t, 50.0 + t, 1 << 30, [{"index": 0, "util": 10 * t, "memory": 2 << 30}])
    finally:
        store.close()
    usage = srv.api.get(f"/api/web/sessions/{b}/info").json()["usage"]
    # First, older than the session's own samples (its start and end, from the real run).
    assert usage["cpu"][:3] == [50.0, 51.0, 52.0] and usage["gpus"]["0"]["util"] == [0, 10, 20]
