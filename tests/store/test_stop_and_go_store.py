"""The store's part of stop-and-go (nsml.server.pausing): what the journal's stop-and-go lines
record on a session, and the pending request kept on its row (so it survives a restart)."""

import time

from nsml.core import spool
from nsml.core.states import Status
from tests.store.test_sql_store import line, new_session


def running(store):
    s = new_session(store)
    return store.move_session(s.id, Status.RUNNING, started=time.time())


def event(walltime, kind, **fields) -> bytes:
    return (spool.stop_and_go_line(walltime, kind, **fields) + "\n").encode()


def test_the_journal_says_whether_and_where_a_session_paused(store):
    s = running(store)
    data = line(step=0, loss=1.0) + event(1.0, spool.READY)
    store.ingest_journal(s.id, 0, data)
    got = store.session_by_id(s.id)
    assert got.pausable and (got.pause_checkpoint, got.pause_error) == ("", "")
    assert [p.value for p in store.metric_points(s.id, "loss")] == [1.0]  # the metrics around it are kept

    more = event(2.0, spool.PAUSE_FAILED, error="OSError: full") + line(step=1, loss=0.5) + event(3.0, spool.PAUSED, name="paused-1")
    store.ingest_journal(s.id, len(data), more)
    got = store.session_by_id(s.id)
    assert (got.pause_checkpoint, got.pause_error) == ("paused-1", "")  # the later event wins
    notes = []
    bad = b'{"k":"g","e":"paused","name":"a/b"}\n' + b'{"k":"g","e":"nonsense"}\n'
    store.ingest_journal(s.id, len(data) + len(more), bad, notes)
    assert store.session_by_id(s.id).pause_checkpoint == "paused-1"
    assert [about for about, _ in notes] == ["stop-and-go"]  # once per chunk, like other refusals


def test_a_request_is_kept_as_made_and_a_pause_outranks_a_preemption(store):
    s = running(store)
    first = store.request_pause(s.id, "preempt", 10.0, "preempted: for bob")
    assert (first.pause_requested, first.pause_requested_at) == ("preempt", 10.0)
    again = store.request_pause(s.id, "preempt", 11.0, "preempted: again")
    assert (again.pause_requested, again.pause_requested_at) == ("preempt", 10.0)  # a repeat: unchanged
    upgraded = store.request_pause(s.id, "pause", 12.0, "pause requested by alice")
    assert (upgraded.pause_requested, upgraded.pause_requested_at) == ("pause", 10.0)
    assert store.request_pause(s.id, "preempt", 13.0, "preempted").pause_requested == "pause"
    notes = [(e.status, e.note) for e in store.session_events(s.id)]
    assert notes[-2:] == [("running", "preempted: for bob"), ("running", "pause requested by alice")]

    cleared = store.clear_pause_request(s.id, "pause failed: boom")
    assert (cleared.pause_requested, cleared.pause_requested_at) == ("", None)
    assert store.session_events(s.id)[-1].note == "pause failed: boom"
    assert store.request_pause(new_session(store).id, "pause", 1.0, "x") is None  # not running


def test_a_paused_session_ends_with_its_note_and_its_next_attempt_starts_afresh(store):
    s = running(store)
    store.ingest_journal(s.id, 0, event(1.0, spool.READY) + event(2.0, spool.PAUSED, name="paused-1"))
    store.request_pause(s.id, "pause", 1.5, "pause requested by alice")
    paused = store.move_session(s.id, Status.PAUSED, note="paused at checkpoint paused-1", ended=3.0, exit_code=0)
    assert paused.status is Status.PAUSED and store.session_events(s.id)[-1].note == "paused at checkpoint paused-1"
    again = store.start_attempt(s.id, "paused-1", 0, "resumed from checkpoint paused-1 (attempt 2)")
    assert (again.attempt, again.pausable, again.pause_requested, again.pause_checkpoint) == (2, False, "", "")


def test_a_queued_session_pauses_at_once_and_comes_back_as_the_same_attempt(store):
    s = new_session(store)
    paused = store.pause_queued(s.id, "pause requested by alice (before it started)")
    assert (paused.status, paused.started) == (Status.PAUSED, None)
    assert store.pause_queued(s.id, "again") is None  # not queued any more
    queued = store.requeue_paused(s.id, "queued again")
    assert (queued.status, queued.attempt, queued.ended) == (Status.QUEUED, 1, None)
    assert store.requeue_paused(s.id, "again") is None
    r = running(store)
    assert store.pause_queued(r.id, "too late") is None  # started meanwhile: a running session is paused otherwise
    assert store.move_session(r.id, Status.PAUSED, ended=1.0) is not None
    assert store.requeue_paused(r.id, "x") is None  # it ran: nsml resume starts its next attempt instead


def test_a_session_whose_supervisor_was_never_recorded_queues_again_as_the_same_attempt(store):
    s = new_session(store)
    assert store.requeue_unlaunched(s.id, "x") is None  # queued: nothing to take back
    prepared = store.move_session(s.id, Status.RUNNING, started=time.time(), node="n", gpu_ids="0,1")
    queued = store.requeue_unlaunched(prepared.id, "queued again: the server stopped while preparing it")
    assert (queued.status, queued.attempt, queued.started, queued.gpu_ids, queued.node) == (Status.QUEUED, 1, None, "", "")
    assert [e.status for e in store.session_events(s.id)][-2:] == ["running", "queued"]
    launched = running(store)
    store.record_launch(launched.id, 4321)
    assert store.requeue_unlaunched(launched.id, "x") is None  # its supervisor was started: it ran
    assert store.session_by_id(launched.id).status is Status.RUNNING
