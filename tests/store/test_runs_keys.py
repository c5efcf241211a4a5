"""The runs table's column picker (store.runs_keys) and row details (sessions_by_ids), on
SQLite and PostgreSQL: keys among the sessions a scope reads and a query selects, most common
first; the newest sessions' summary keys; removed sessions left out."""

import json

from nsml.core import query
from nsml.core.policy import session_scope

from .test_runs import new_session, report


def summary_report(store, session, step, values) -> None:
    offset = store.session_by_id(session.id).journal_offset
    line = json.dumps({"k": "m", "w": 1.7e9 + step, "step": step, "v": values, "s": 1}) + "\n"
    store.ingest_journal(session.id, offset, line.encode())


def test_keys_are_counted_over_the_visible_sessions_most_common_first(store):
    a = new_session(store, "--lr 0.1 --opt adam")
    b = new_session(store, "--lr 0.2 --opt adam --hidden 64")
    c = new_session(store, "--lr 0.3")
    report(store, a, (0, {"loss": 1.0, "acc": 0.5}))
    report(store, b, (0, {"loss": 2.0}))
    summary_report(store, c, 3, {"val/acc": 0.9})
    hidden = new_session(store, "--secret 1")
    report(store, hidden, (0, {"hidden_metric": 1.0}))
    store.hide_session(hidden.id, 1.0)
    keys = store.runs_keys()
    assert keys["params"] == [("lr", 3, 3), ("opt", 2, 1), ("hidden", 1, 1)]
    assert keys["metrics"] == [("loss", 2), ("acc", 1), ("val/acc", 1)]
    assert keys["summary"] == ["val/acc"]  # never "step"
    narrowed = store.runs_keys(where_tree=query.parse("lr >= 0.2"))
    assert [k for k, *_ in narrowed["params"]] == ["lr", "hidden", "opt"]
    assert [k for k, _ in narrowed["metrics"]] == ["loss", "val/acc"]
    assert store.runs_keys(limit=1)["params"] == [("lr", 3, 3)]


def test_keys_follow_the_scope_and_details_come_by_id(store):
    for name in ("alice", "eve"):
        store.add_user(name)
    mine = new_session(store, "--lr 0.1", visibility="private")
    theirs = new_session(store, "--batch 8", owner="eve", visibility="private")
    report(store, theirs, (0, {"eve_loss": 1.0}))
    seen = store.runs_keys(scope=session_scope(store.actor("alice")))
    assert [k for k, *_ in seen["params"]] == ["lr"] and seen["metrics"] == []
    found = store.sessions_by_ids([theirs.id, mine.id, 10**6])
    assert set(found) == {mine.id, theirs.id} and found[theirs.id].owner == "eve"
    assert store.sessions_by_ids([]) == {}
