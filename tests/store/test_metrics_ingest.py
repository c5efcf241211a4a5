"""SqlStore.ingest_journal on a real SQLite file: inputs that once made it raise, and resends.

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
def store(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'nsml.db'}")
    yield s
    s.close()


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
