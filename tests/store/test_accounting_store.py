"""The usage ledger (AccountingStore), on SQLite and PostgreSQL: each ended attempt of a session
that held resources is one span, charged to its owner and team; running sessions are spans up
to now; removing the session keeps what it used."""

import time

from nsml.core.resources import Resources
from nsml.core.states import Status
from tests.store.test_sql_store import files


def gpu_session(store, owner="alice", team="", gpus=2):
    return store.create_session(owner, "d", "main.py", "", Resources(1, 1 << 30, gpus), "", "", files(("main.py", "x")), team=team)


def test_each_ended_attempt_is_a_span_and_a_running_one_reaches_now(store):
    t = time.time()
    a = gpu_session(store, "alice", "vision")
    store.move_session(a.id, Status.RUNNING, started=t - 100)
    store.move_session(a.id, Status.EXITED, ended=t - 40)
    b = gpu_session(store, "bob", gpus=1)
    store.move_session(b.id, Status.RUNNING, started=t - 10)
    cpu = gpu_session(store, "carol", gpus=0)
    store.move_session(cpu.id, Status.RUNNING, started=t - 10)
    store.move_session(cpu.id, Status.EXITED, ended=t - 5)
    spans = sorted(store.usage_spans(t - 1000), key=lambda s: s.owner)
    assert [(s.owner, s.team, s.gpus, s.ended) for s in spans] == [("alice", "vision", 2, t - 40), ("bob", "", 1, None)]
    assert spans[0].started == t - 100 and spans[0].holders() == ("alice", "team:vision")
    assert store.usage_spans(t - 20) == [s for s in spans if s.ended is None]  # ended before the window: left out
    assert [s.owner for s in store.usage_spans(t - 1000, ["team:vision"])] == ["alice"]
    assert [s.owner for s in store.usage_spans(t - 1000, ["bob"])] == ["bob"]
    assert store.usage_spans(t - 1000, []) == []


def test_a_resumed_session_has_a_span_per_attempt_and_removal_keeps_them(store):
    t = time.time()
    s = gpu_session(store, "dave", gpus=4)
    store.move_session(s.id, Status.RUNNING, started=t - 300)
    store.move_session(s.id, Status.STOPPED, ended=t - 200)
    store.start_attempt(s.id, "1", 0, "resumed from checkpoint 1 (attempt 2)")
    store.move_session(s.id, Status.RUNNING, started=t - 100)
    store.move_session(s.id, Status.FAILED, ended=t - 50)
    store.delete_session(s.id)
    spans = store.usage_spans(t - 1000, ["dave"])
    assert sorted((sp.started, sp.ended, sp.gpus) for sp in spans) == [(t - 300, t - 200, 4), (t - 100, t - 50, 4)]
