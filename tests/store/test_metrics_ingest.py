"""SqlStore.ingest_journal on SQLite and PostgreSQL (tests/store/conftest.py): inputs that once made it raise, and resends.

An ingest that raises makes the supervisor retry the same bytes forever, so every metric after
them stays on the machine; these inputs must be stored (or skipped) instead. And the supervisor
may resend bytes the server already has (a lost answer, a restart), cut anywhere: each point is
stored once whatever the chunking.
"""

import json
import random

import pytest

from nsml.core.resources import Resources
from nsml.store.sql import open_store


@pytest.fixture
def session(store):
    return store.create_session("alice", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "", [])


def line(**fields) -> bytes:
    return (json.dumps({"k": "m", "w": 1.0, "s": False, **fields}) + "\n").encode()


def test_integers_too_large_for_a_float_are_kept_exactly(store, session):
    huge, negative = 10**400, -(2**1024)  # float() of either raises OverflowError
    data = line(step=1, v={"big": huge}) + line(step=2, v={"big": negative, "loss": 0.5}, s=True)
    assert store.ingest_journal(session.id, 0, data) == len(data)

    points = store.metric_points(session.id, "big")
    assert [p.value for p in points] == [huge, negative]
    assert all(type(p.value) is int for p in points)  # not a float, not inf, not a string
    assert [p.step for p in points] == [1.0, 2.0]
    assert store.series_keys(session.id) == {"big": 2, "loss": 1}
    s = store.session_by_id(session.id)
    assert s.summary == {"step": 2, "big": negative, "loss": 0.5}
    assert s.last_values == {"step": 2, "big": negative, "loss": 0.5}


def test_an_integer_step_too_large_for_a_float_stores_the_point_without_a_step(store, session):
    data = line(step=10**400, v={"loss": 1.0}) + line(step=3, v={"loss": 2.0})
    assert store.ingest_journal(session.id, 0, data) == len(data)
    assert [(p.step, p.value) for p in store.metric_points(session.id, "loss")] == [(None, 1.0), (3.0, 2.0)]
    assert store.session_by_id(session.id).last_values["step"] == 3


@pytest.mark.parametrize("v", [[1, 2], 3, "loss", None, True], ids=["list", "number", "string", "null", "bool"])
def test_a_line_whose_values_are_not_an_object_is_counted_with_no_values(store, session, v):
    data = line(v={"loss": 1.0}) + line(v=v) + line(v={"loss": 3.0}) + line(step=None, v={"acc": 0.5})
    assert store.ingest_journal(session.id, 0, data) == len(data)
    # the odd line stores nothing, but it was a report: the step-less lines after it count it
    assert [(p.step, p.value) for p in store.metric_points(session.id, "loss")] == [(0.0, 1.0), (2.0, 3.0)]
    assert [(p.step, p.value) for p in store.metric_points(session.id, "acc")] == [(3.0, 0.5)]
    assert store.series_keys(session.id) == {"acc": 1, "loss": 2}
    assert store.session_by_id(session.id).journal_offset == len(data)


def test_a_line_without_values_is_counted_too(store, session):
    data = line(v={"loss": 1.0}) + (json.dumps({"k": "m", "w": 1.0}) + "\n").encode() + line(v={"loss": 3.0})
    assert store.ingest_journal(session.id, 0, data) == len(data)
    assert [(p.step, p.value) for p in store.metric_points(session.id, "loss")] == [(0.0, 1.0), (2.0, 3.0)]


def test_chunked_resends_of_the_same_bytes_store_each_point_once(store, session):
    """The journal is sent in random pieces cut anywhere (torn lines included), often from an
    earlier offset than the server has (a resend), then once more whole: every point once."""
    n = 1234  # more than the 100 rows of one multi-row INSERT, and not a multiple of it
    journal = b"".join(line(step=i, v={"loss": 1 / (i + 1), "acc": i / n, "big": 10**400 + i}) for i in range(n))
    rng = random.Random(7)
    have = sends = 0
    while have < len(journal):
        start = max(0, have - rng.randrange(0, 4000)) if rng.random() < 0.5 else have  # resend old bytes
        end = min(len(journal), have + rng.randrange(1, 20_000))
        new = store.ingest_journal(session.id, start, journal[start:end])
        assert have <= new <= end and (new == end or journal[new - 1:new] == b"\n")
        have, sends = new, sends + 1
    assert sends > 20
    assert store.ingest_journal(session.id, 0, journal) == len(journal)  # the whole of it again

    assert store.series_keys(session.id) == {"acc": n, "big": n, "loss": n}
    assert store.count_points(session.id) == 3 * n
    loss = store.metric_points(session.id, "loss")
    assert [p.step for p in loss] == [float(i) for i in range(n)]
    assert [p.value for p in loss] == [1 / (i + 1) for i in range(n)]
    assert [p.value for p in store.metric_points(session.id, "big")] == [10**400 + i for i in range(n)]
    s = store.session_by_id(session.id)
    assert s.journal_offset == len(journal)
    assert s.last_values == {"step": n - 1, "loss": 1 / n, "acc": (n - 1) / n, "big": 10**400 + n - 1}


# -- what a hostile session may write into its journal ------------------------------------------
def ingest(store, session, data: bytes) -> list[tuple[str, str]]:
    notes = []
    assert store.ingest_journal(session.id, 0, data, notes) == len(data)  # never stuck on a line
    return notes


def texts(notes) -> str:
    return "\n".join(text for _about, text in notes)


def test_nan_and_infinities_are_not_stored_and_named_once_per_key(store, session):
    data = (line(step=1, v={"loss": 0.5}, s=True)
            + b'{"k":"m","w":1.0,"step":5,"s":true,"v":{"loss":NaN,"acc":0.75,"big":Infinity,"neg":-Infinity}}\n'
            + b'{"k":"m","w":1.0,"step":6,"v":{"loss":NaN,"huge":1e400,"hist":[1,NaN],"deep":{"a":[Infinity]}}}\n'
            + line(step=7, v={"loss": 0.25}))
    notes = ingest(store, session, data)
    assert [p.value for p in store.metric_points(session.id, "loss")] == [0.5, 0.25]
    assert store.series_keys(session.id) == {"acc": 1, "loss": 2}  # no series for values never stored
    s = store.session_by_id(session.id)
    assert s.summary == {"step": 5, "loss": 0.5, "acc": 0.75}  # the NaN did not replace the last good loss
    assert s.last_values == {"step": 7, "loss": 0.25, "acc": 0.75}
    text = texts(notes)
    assert "[nsml] loss=nan at step 5 was not stored: metric values must be finite numbers" in text
    assert "[nsml] big=inf at step 5 was not stored" in text and "[nsml] neg=-inf at step 5" in text
    assert "[nsml] huge=inf at step 6" in text  # 1e400 parses as an infinity
    assert "the value of hist at step 6 holds NaN or an infinity and was not stored" in text
    assert text.count("loss=nan") == 1  # once per key
    assert json.loads(json.dumps(s.summary, allow_nan=False)) == s.summary  # valid JSON for every client


def test_a_non_finite_step_or_an_odd_walltime_is_stored_as_none(store, session):
    data = (b'{"k":"m","w":NaN,"step":NaN,"v":{"loss":1.0}}\n'
            + b'{"k":"m","w":"yesterday","step":Infinity,"v":{"loss":2.0}}\n'
            + b'{"k":"m","w":{"a":[1]},"step":3,"v":{"loss":3.0}}\n')
    notes = ingest(store, session, data)  # a NaN walltime once broke the NOT NULL column
    points = store.metric_points(session.id, "loss")
    assert [(p.step, p.walltime, p.value) for p in points] == [(0.0, 0.0, 1.0), (1.0, 0.0, 2.0), (3.0, 0.0, 3.0)]
    assert "step=nan is not a finite number" in texts(notes)
    assert store.session_by_id(session.id).last_values["step"] == 3


def test_garbage_lines_are_skipped_with_a_note_and_the_rest_is_stored(store, session):
    data = (line(step=1, v={"loss": 1.0}) + b"\xff\xfe\x00 not utf-8\n" + b"not json\n" + b"[1, 2]\n"
            + b'{"k": "zz"}\n' + b'{"k":"c","name":"x","dir":"checkpoints/a"}\n' + b"[" * 100000 + b"\n"
            + line(step=2, v={"loss": 2.0}))
    notes = ingest(store, session, data)
    assert [p.value for p in store.metric_points(session.id, "loss")] == [1.0, 2.0]
    assert {about for about, _ in notes} == {"garbage", "kind"}  # checkpoint lines are the supervisor's: no note
    assert "a journal line that is not JSON was skipped" in texts(notes)


def test_keys_are_bounded_in_length_and_number(store, session):
    from nsml.core import spool

    data = line(step=0, v={"loss": 1.0}) + line(v={"x" * (spool.MAX_KEY + 1): 1.0, "": 2.0, "ok": 3.0})
    flood = {f"k{i}": i for i in range(spool.MAX_SERIES + 50)}
    data += line(v=flood) + line(step=9, v={"loss": 9.0, "late_key": 1.0})
    notes = ingest(store, session, data)
    keys = store.series_keys(session.id)
    assert len(keys) == spool.MAX_SERIES and keys["loss"] == 2 and "ok" in keys
    assert not any(len(k) > spool.MAX_KEY or not k for k in keys) and "late_key" not in keys
    text = texts(notes)
    assert f"characters) was not stored: keys may be 1 to {spool.MAX_KEY} characters" in text
    assert f"a session may report at most {spool.MAX_SERIES} different keys" in text
    assert "late_key" not in store.session_by_id(session.id).last_values


def test_values_are_bounded_and_big_ones_stay_out_of_the_summary(store, session):
    from nsml.core import spool

    too_big = "y" * spool.MAX_VALUE
    medium = list(range(400))  # stored as a point, too big for a summary column
    notes = ingest(store, session, line(step=1, s=True, v={"note": too_big, "hist": medium, "loss": 0.5}))
    assert store.series_keys(session.id) == {"hist": 1, "loss": 1}
    assert store.metric_points(session.id, "hist")[0].value == medium
    assert store.session_by_id(session.id).summary == {"step": 1, "loss": 0.5}
    assert f"values may be at most {spool.MAX_VALUE} bytes" in texts(notes)


def test_a_line_over_max_line_is_never_parsed_and_the_offset_moves_past_it(store, session):
    from nsml.core import spool

    long_line = b'{"k":"m","v":{"x":"' + b"A" * spool.MAX_LINE + b'"}}\n'
    data = line(step=1, v={"loss": 1.0}) + long_line + line(step=2, v={"loss": 2.0})
    notes = ingest(store, session, data)
    assert [p.value for p in store.metric_points(session.id, "loss")] == [1.0, 2.0]
    assert "x" not in store.series_keys(session.id)
    assert f"lines may be at most {spool.MAX_LINE} bytes" in texts(notes)


def test_skipping_a_line_is_idempotent_and_refuses_gaps(store, session):
    from nsml.core.errors import Conflict

    first = line(step=1, v={"loss": 1.0})
    store.ingest_journal(session.id, 0, first)
    assert store.skip_journal(session.id, len(first), 5000) == len(first) + 5000
    assert store.skip_journal(session.id, len(first), 5000) == len(first) + 5000  # a retry
    assert store.skip_journal(session.id, 0, 10) == len(first) + 5000  # old news
    with pytest.raises(Conflict):
        store.skip_journal(session.id, len(first) + 6000, 10)
    after = line(step=2, v={"loss": 2.0})
    assert store.ingest_journal(session.id, len(first) + 5000, after) == len(first) + 5000 + len(after)
    assert [p.value for p in store.metric_points(session.id, "loss")] == [1.0, 2.0]


def test_the_same_bytes_sent_through_two_servers_at_once_are_stored_once(database_url, session):
    """A supervisor that retries through another server while the first still works on its
    post: the session's row is locked while its offset is checked, so the two serialise."""
    import threading

    from nsml.core.errors import Conflict

    data = b"".join(line(step=i, v={"loss": float(i)}) for i in range(2000))
    stores = [open_store(database_url) for _ in range(3)]
    results = []

    def send(s):
        try:
            results.append(s.ingest_journal(session.id, 0, data))
        except Conflict as exc:  # not expected: resends of bytes the server has are skipped
            results.append(exc)

    threads = [threading.Thread(target=send, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [len(data)] * 3
    assert stores[0].series_keys(session.id) == {"loss": 2000}
    assert [p.step for p in stores[0].metric_points(session.id, "loss")] == [float(i) for i in range(2000)]
    for s in stores:
        s.close()



# -- several posts in one transaction (the server's journal ingest, nsml/server/ingest.py) ------
def test_a_batch_stores_each_post_as_alone_and_a_bad_post_fails_only_itself(store, session):
    from nsml.core.errors import Conflict, NotFound
    from nsml.store.sql.metrics import JournalPost

    other = store.create_session("bob", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "", [])
    first, second = line(step=1, v={"loss": 1.0}), line(step=2, v={"loss": 0.5})
    results = store.ingest_journals([
        JournalPost(session.id, 0, first, heartbeat=123.0),
        JournalPost(other.id, 10, first),  # a gap: the server has none of its bytes
        JournalPost(session.id, 0, first + second),  # a resend overlapping the first post
        JournalPost(10**9, 0, first),  # no such session
        JournalPost(other.id, 0, second, heartbeat=456.0),
    ])
    assert results[0] == len(first) and results[2] == len(first + second) and results[4] == len(second)
    assert isinstance(results[1], Conflict) and isinstance(results[3], NotFound)
    assert [(p.step, p.value) for p in store.metric_points(session.id, "loss")] == [(1.0, 1.0), (2.0, 0.5)]
    assert [p.value for p in store.metric_points(other.id, "loss")] == [0.5]
    assert (store.session_by_id(session.id).heartbeat, store.session_by_id(other.id).heartbeat) == (123.0, 456.0)


def test_a_post_that_breaks_its_batch_is_retried_alone_and_the_rest_is_stored(store, session):
    """An error no check foresaw (here: a body that is not bytes) rolls the batch back; its
    posts are then ingested one transaction each, so only the broken one fails."""
    from nsml.store.sql.metrics import JournalPost

    other = store.create_session("bob", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "", [])
    data = line(step=1, v={"loss": 1.0})
    results = store.ingest_journals([JournalPost(session.id, 0, data), JournalPost(other.id, 0, "not bytes"),
                                     JournalPost(other.id, 0, data)])
    assert results[0] == len(data) and results[2] == len(data) and isinstance(results[1], TypeError)
    assert store.series_keys(session.id) == {"loss": 1} and store.series_keys(other.id) == {"loss": 1}
