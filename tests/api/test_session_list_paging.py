"""GET /api/sessions pages on the server: `limit` and `offset` (bounded), newest first, the
listing's size in X-Total-Count, the body a plain list; without `limit` every session, as old
clients expect. The sessions are rows put into the store before the server starts
(tests.cli.test_ps_paging.insert_sessions: 120 ended ones, bob's public).
"""

from fnmatch import fnmatchcase

import pytest

from tests.cli.test_datasets import add_user
from tests.cli.test_ps_paging import TOTAL, insert_sessions
from tests.conftest import Server, kill_leftover_supervisors


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    home = tmp_path_factory.mktemp("list_paging") / "home"
    names = insert_sessions(home)
    srv = Server(home).start()
    srv.names = names
    yield srv
    srv.stop()
    kill_leftover_supervisors(srv.home)


def get(srv: Server, **params) -> tuple[int, list[str]]:
    """(X-Total-Count, the names listed) of GET /api/sessions?all=true&PARAMS."""
    resp = srv.api.get("/api/sessions", params={"all": True, **params})
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json(), list)
    return int(resp.headers["X-Total-Count"]), [s["name"] for s in resp.json()]


def test_without_limit_every_session_newest_first_as_before(srv):
    assert get(srv) == (TOTAL, srv.names)
    resp = srv.api.get("/api/sessions", params={"all": True}).json()
    assert [s["created"] for s in resp] == sorted((s["created"] for s in resp), reverse=True)
    assert {"name", "status", "summary", "last_values", "queue_position", "zombie"} <= set(resp[0])


def test_pages_cover_the_listing_once(srv):
    pages = [get(srv, limit=50, offset=k) for k in (0, 50, 100)]
    assert all(total == TOTAL for total, _ in pages)
    assert [len(p) for _, p in pages] == [50, 50, 20]
    assert sum((p for _, p in pages), []) == srv.names
    assert get(srv, limit=0) == (TOTAL, [])  # the count alone
    assert get(srv, limit=10, offset=500) == (TOTAL, [])
    assert get(srv, offset=115) == (TOTAL, srv.names[115:])  # no limit: the rest


def test_last_caps_the_listing_that_is_paged(srv):
    assert get(srv, last=30) == (30, srv.names[:30])
    assert get(srv, last=30, limit=20, offset=20) == (30, srv.names[20:30])
    assert get(srv, last=30, limit=20, offset=40) == (30, [])


def test_filters_and_globs_are_counted_and_paged(srv):
    kin = [n for n in srv.names if n.split("/")[1] == "kin"]
    assert get(srv, dataset="kin", limit=5, offset=5) == (len(kin), kin[5:10])
    for pattern in ("bob/*", "*/cifar/1?", "[ab]*/mnist/*", "[!a]*/kin/[]1]", "carol/kin/3", "*"):
        matching = [n for n in srv.names if fnmatchcase(n, pattern)]
        assert get(srv, pattern=pattern) == (len(matching), matching), pattern
        assert get(srv, pattern=pattern, limit=3, offset=1) == (len(matching), matching[1:4]), pattern
    assert get(srv, pattern="nobody/*") == (0, [])
    resp = srv.api.get("/api/sessions", params={"limit": 5})  # running and queued only: none here
    assert resp.json() == [] and resp.headers["X-Total-Count"] == "0"


def test_the_count_is_of_what_the_caller_may_read(srv):
    eve = add_user(srv, "eve", "eve-token-for-paging")
    public = [n for n in srv.names if n.startswith("bob/")]  # the others: team-visible, no team
    resp = eve.get("/api/sessions", params={"all": True, "limit": 4})
    assert resp.headers["X-Total-Count"] == str(len(public))
    assert [s["name"] for s in resp.json()] == public[:4]


@pytest.mark.parametrize("params", [{"limit": -1}, {"offset": -1}, {"limit": 2**31}, {"offset": 2**31},
                                    {"limit": "many"}, {"offset": 1.5}])
def test_paging_parameters_are_bounded(srv, params):
    resp = srv.api.get("/api/sessions", params={"all": True, **params})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"][-1] in params


def test_openapi_describes_the_paging(srv):
    op = srv.api.get("/openapi.json").json()["paths"]["/api/sessions"]["get"]
    assert {"limit", "offset", "last"} <= {p["name"] for p in op["parameters"]}
    assert "X-Total-Count" in op["responses"]["200"]["headers"]
