"""Usability analytics over the API (nsml/server/api/clicks.py): off unless the server opted
in; events checked; the summary for admins only."""

import pytest

from tests.cli.test_datasets import add_user
from tests.conftest import Server, kill_leftover_supervisors


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("usability") / "home", env={"NSML_USAGE_ANALYTICS": "1"}).start()
    yield srv
    srv.stop()
    kill_leftover_supervisors(srv.home)


def test_events_posted_are_summarised_for_admins(srv):
    events = [{"page": "home", "action": "view"}, {"page": "home", "action": "click:sort-loss"},
              {"page": "home", "action": "leave", "ms": 4000}, {"page": "session", "action": "view"},
              {"page": "home", "action": "view"}]
    assert srv.api.post("/api/web/events", json={"events": events}).status_code == 204
    s = srv.api.get("/api/web/usability").json()
    assert s["users"] == 1 and s["days"] == 30
    assert s["pages"][0] == {"page": "home", "views": 2, "mean_seconds": 4.0}
    assert s["back_and_forth"] == [{"page": "home", "via": "session", "count": 1}]
    assert s["controls"] == [{"page": "home", "control": "sort-loss", "clicks": 1}]


def test_only_admins_read_it_and_bad_events_are_refused_whole(srv):
    bob = add_user(srv, "bob", "bob-token-0123456789abcdef")
    assert bob.post("/api/web/events", json={"events": [{"page": "compare", "action": "view"}]}).status_code == 204
    assert bob.get("/api/web/usability").status_code == 403
    for bad in ([{"page": "/sessions/alice/secret/1", "action": "view"}], [{"page": "home", "action": "typed:lr"}],
                [{"page": "home", "action": "view"}] * 101, [{"page": "home", "action": "leave", "ms": -5}]):
        assert bob.post("/api/web/events", json={"events": bad}).status_code in (400, 422)
    assert srv.api.get("/api/web/usability").json()["users"] == 2  # alice's and bob's one good post
    assert srv.api.get("/api/web/usability", params={"days": 0}).status_code == 422


def test_a_server_that_did_not_opt_in_records_nothing(server):
    resp = server.api.post("/api/web/events", json={"events": [{"page": "home", "action": "view"}]})
    assert resp.status_code == 404 and "--usage-analytics" in resp.json()["detail"]
    assert server.api.get("/api/web/usability").status_code == 404
