"""GET /api/runs against a real server: parameter and metric columns, sorting both ways with
nulls last, paging with X-Total-Count, what another user may read, and every bad column,
sort, order or page a clear 4xx, never a 5xx. The sessions are made in the server's store
before it starts: alice's 12 (team-visible, no team) and bob's 3 public ones, with a loss."""

import json

import pytest

from tests.cli.test_datasets import add_user
from tests.conftest import Server, kill_leftover_supervisors


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from nsml.core.entities import FileEntry
    from nsml.core.resources import Resources
    from nsml.store.sql import open_store

    home = tmp_path_factory.mktemp("runs_api") / "home"
    home.mkdir(parents=True)
    store = open_store(f"sqlite:///{home / 'nsml.db'}")
    made = []
    for i in range(15):
        owner = "bob" if i % 5 == 4 else "alice"
        s = store.create_session(owner, "digits", "main.py", f"--lr {(i % 4 + 1) / 100} --opt {'adam' if i % 2 else 'sgd'}",
                                 Resources(1, 1 << 30, 0), "", "", [FileEntry("main.py", 1, "0" * 64)],
                                 visibility="public" if owner == "bob" else "team")
        if i != 7:  # one never reported
            lines = [{"k": "m", "w": 1.7e9 + step, "step": step, "v": {"val/loss": (i + 1) / (step + 1)}} for step in range(3)]
            store.ingest_journal(s.id, 0, "".join(json.dumps(x) + "\n" for x in lines).encode())
        made.append(s)
    store.close()
    srv = Server(home).start()
    srv.made = made
    yield srv
    srv.stop()
    kill_leftover_supervisors(srv.home)


def get(srv, client=None, **params):
    resp = (client or srv.api).get("/api/runs", params=params)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert int(resp.headers["X-Total-Count"]) == body["total"]
    return body


def test_the_columns_asked_for_newest_first_by_default(srv):
    body = get(srv, param=["lr", "opt"], metric=["val/loss:min", "val/loss:last", "val/loss"])
    assert body["total"] == 15 and len(body["rows"]) == 15
    assert [r["name"] for r in body["rows"]] == [s.name for s in reversed(srv.made)]
    assert (body["sort"], body["order"], body["params"], body["metrics"]) == (
        "created", "desc", ["lr", "opt"], ["val/loss:min", "val/loss:last"])
    oldest = body["rows"][-1]
    assert oldest["params"] == {"lr": 0.01, "opt": "sgd"}
    assert oldest["metrics"] == {"val/loss": {"min": 1 / 3, "last": 1 / 3}}
    assert {"id", "name", "status", "created"} <= set(oldest)
    silent = next(r for r in body["rows"] if r["name"] == srv.made[7].name)
    assert silent["metrics"] == {"val/loss": {"min": None, "last": None}}


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorted_by_a_metric_nulls_last_and_paged(srv, order):
    whole = get(srv, metric="val/loss:max", sort="metric:val/loss:max", order=order, limit=100)["rows"]
    values = [r["metrics"]["val/loss"]["max"] for r in whole]
    assert values[-1] is None and values[:-1] == sorted(values[:-1], reverse=order == "desc")
    pages = [get(srv, metric="val/loss:max", sort="metric:val/loss:max", order=order, limit=4, offset=k)
             for k in range(0, 16, 4)]
    assert [r["name"] for p in pages for r in p["rows"]] == [r["name"] for r in whole]
    assert all(p["total"] == 15 for p in pages) and get(srv, limit=0)["rows"] == []


def test_sorted_by_a_parameter(srv):
    rows = get(srv, param="lr", sort="param:lr", order="asc")["rows"]
    assert [r["params"]["lr"] for r in rows] == sorted(r["params"]["lr"] for r in rows)


def test_another_user_sees_what_the_listing_shows_them(srv):
    eve = add_user(srv, "eve", "eve-token-for-runs")
    body = get(srv, eve, metric="val/loss:min", sort="metric:val/loss:min")
    bobs = {s.name for s in srv.made if s.owner == "bob"}
    assert body["total"] == len(bobs) and {r["name"] for r in body["rows"]} == bobs
    listed = eve.get("/api/sessions", params={"all": True})
    assert listed.headers["X-Total-Count"] == str(body["total"])


@pytest.mark.parametrize("params, words", [
    ({"metric": "val/loss:mean"}, "last, min, max"),
    ({"sort": "bogus"}, "Sort by"),
    ({"sort": "metric:val/loss:avg"}, "last, min, max"),
    ({"sort": "param:"}, "1 to 256"),
    ({"order": "up"}, "asc or desc"),
    ({"param": "k" * 300}, "1 to 256"),
    ({"param": ""}, "1 to 256"),
    ({"metric": ":min"}, "1 to 256"),
])
def test_bad_columns_are_400_in_words(srv, params, words):
    resp = srv.api.get("/api/runs", params=params)
    assert resp.status_code == 400, resp.text
    assert words in resp.json()["detail"]


@pytest.mark.parametrize("params", [{"limit": 1001}, {"limit": -1}, {"offset": -1}, {"limit": "many"},
                                    {"offset": 2**31}, {"param": [f"k{i}" for i in range(101)]},
                                    {"sort": "param:" + "k" * 400}])
def test_out_of_bounds_pages_are_422(srv, params):
    assert srv.api.get("/api/runs", params=params).status_code == 422


def test_a_page_of_a_thousand_is_allowed_and_anonymous_callers_are_not(srv):
    assert len(get(srv, limit=1000)["rows"]) == 15
    import httpx

    assert httpx.get(srv.url + "/api/runs").status_code == 401


# -- queries, tags and notes ---------------------------------------------------------------------
def test_a_query_narrows_the_table_and_the_listing(srv):
    body = get(srv, param=["lr"], q="lr >= 0.03 and opt = adam")
    want = {s.name for i, s in enumerate(srv.made) if (i % 4 + 1) / 100 >= 0.03 and i % 2}
    assert {r["name"] for r in body["rows"]} == want and body["total"] == len(want) and body["q"] == "lr >= 0.03 and opt = adam"
    listed = srv.api.get("/api/sessions", params={"all": True, "query": "user:bob"})
    assert listed.status_code == 200 and {s["name"] for s in listed.json()} == {s.name for s in srv.made if s.owner == "bob"}
    assert get(srv, q="min(val/loss) < 0.4")["total"] == 1  # (i + 1) / 3 < 0.4: only i = 0


@pytest.mark.parametrize("path, key", [("/api/runs", "q"), ("/api/sessions", "query")])
@pytest.mark.parametrize("query, words", [
    ("lr <", "a value is missing after '<'"), ("foo:bar", "'foo:' is not a field"),
    ("status:runing", "'runing' is not a status"), ("lr = 1; DROP TABLE sessions", "unexpected character ';'"),
    ("(a=1", "a ')' is missing here"),
])
def test_a_bad_query_is_a_400_that_points_at_the_token(srv, path, key, query, words):
    resp = srv.api.get(path, params={key: query, "all": True})
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert words in detail and "^" in detail
    assert get(srv)["total"] == 15  # and nothing was harmed


def test_tags_and_notes_through_the_api_only_by_whoever_controls_the_session(srv):
    alices = srv.made[0]
    path = f"/api/sessions/{alices.name}"
    resp = srv.api.post(path + "/tags", json={"add": ["baseline", "v2"]})
    assert resp.status_code == 200 and resp.json() == {"tags": ["baseline", "v2"]}
    assert srv.api.post(path + "/tags", json={"remove": ["v2", "never"]}).json() == {"tags": ["baseline"]}
    assert [r["name"] for r in get(srv, q="tag:baseline")["rows"]] == [alices.name]
    assert get(srv, q="tag:baseline")["rows"][0]["tags"] == ["baseline"]
    assert srv.api.post(path + "/tags", json={"add": ["two words"]}).status_code == 400
    assert srv.api.put(path + "/note", json={"note": "# Wider\n\nhelps"}).json() == {"note": "# Wider\n\nhelps"}
    assert srv.api.get(path + "/note").json() == {"note": "# Wider\n\nhelps"}
    assert srv.api.put(path + "/note", json={"note": "x" * ((64 << 10) + 1)}).status_code == 422
    carol = add_user(srv, "carol", "carol-token-0123456789")
    assert carol.get(path + "/tags").status_code == 404  # alice's, in no team: not carol's to see
    assert carol.put(path + "/note", json={"note": "defaced"}).status_code == 404
    bobs = f"/api/sessions/{srv.made[4].name}"  # public: carol may read it, not change it
    assert srv.api.post(bobs + "/tags", json={"add": ["public"]}).status_code == 200  # alice is the admin
    assert carol.get(bobs + "/tags").json() == {"tags": ["public"]}
    assert carol.post(bobs + "/tags", json={"add": ["mine"]}).status_code == 403
    assert carol.put(bobs + "/note", json={"note": "defaced"}).status_code == 403
    assert carol.get(bobs + "/tags").json() == {"tags": ["public"]} and srv.api.get(path + "/note").json()["note"] == "# Wider\n\nhelps"
