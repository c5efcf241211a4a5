"""The packed metric layout (nsml/store/packed.py) on SQLite and PostgreSQL: series summaries equal
a recomputation from the points after random ingests, replays and restarts (hypothesis); reads
of series of every awkward length; the numpy downsampler equals the reference one."""

import json
import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from nsml.core.downsample import minmax_downsample
from nsml.core.entities import FileEntry
from nsml.core.resources import Resources
from nsml.store import packed
from nsml.store.sql import open_store

FIXTURE_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


def new_session(store):
    return store.create_session("alice", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "",
                                [FileEntry("main.py", 1, "0" * 64)])


def metrics_line(step, values, wall=1000.0) -> bytes:
    return (json.dumps({"k": "m", "w": wall, "step": step, "v": values}) + "\n").encode()


# -- what the store should hold, computed from the lines alone ----------------------------------
def expected(lines) -> dict[str, list[tuple]]:
    """key -> [(step, value, report index)] of the stored points, in report order."""
    out: dict[str, list[tuple]] = {}
    for count, (step, values) in enumerate(lines):
        if step is None:
            step = float(count)
        elif not isinstance(step, (int, float)) or isinstance(step, bool):
            step = None
        else:
            step = float(step)
        for key, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                continue  # refused by the ingest
            stored = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
            out.setdefault(key, []).append((step, stored, count))
    return out


def in_read_order(points):
    """Step order, points without a step first, report order among equals."""
    return sorted(points, key=lambda p: (-math.inf if p[0] is None else p[0], p[2]))


def summary_of(points) -> dict:
    numbers = [(s, v) for s, v, _ in points if isinstance(v, float)]
    out = dict(count=len(points), numeric=len(numbers), last_value=None, last_step=None,
               min_value=None, min_step=None, max_value=None, max_step=None)
    if numbers:
        lo = min(range(len(numbers)), key=lambda i: numbers[i][1])
        hi = max(range(len(numbers)), key=lambda i: numbers[i][1])
        out.update(last_step=numbers[-1][0], last_value=numbers[-1][1], min_step=numbers[lo][0],
                   min_value=numbers[lo][1], max_step=numbers[hi][0], max_value=numbers[hi][1])
    return out


values_strategy = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64), st.integers(-10**6, 10**6),
    st.sampled_from([float("nan"), float("inf"), "warm-up", True, None, [1, 2]]))
step_strategy = st.one_of(st.integers(-5, 3000), st.none(), st.just("x"))
lines_strategy = st.lists(st.tuples(step_strategy, st.dictionaries(st.sampled_from(["loss", "acc", "note"]),
                                                                  values_strategy, max_size=3)),
                          min_size=1, max_size=400)
# How the journal reaches the store: cut at random line boundaries; each post may start earlier
# than what the store has (a supervisor retrying after a lost answer); the store may restart.
posts_strategy = st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.booleans()), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(lines=lines_strategy, posts=posts_strategy, increasing=st.booleans())
def test_summaries_and_reads_equal_a_recomputation_after_random_ingests_replays_and_restarts(
        database_url, lines, posts, increasing):
    if increasing:  # the common case: steps in order (one chunk after another, no merging)
        lines = [(i * 3, values) for i, (_, values) in enumerate(lines)]
    data = b"".join(metrics_line(step, values) for step, values in lines)
    ends = [0] + [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    store = open_store(database_url)
    session = new_session(store)
    try:
        have = 0
        for upto, back, restart in posts:
            stop = ends[min(len(ends) - 1, max(1, round(upto * (len(ends) - 1))))]
            start = ends[round(back * ends.index(have))] if have else 0  # at or before what the store has
            if stop > have:
                have = store.ingest_journal(session.id, start, data[start:stop])
            if restart:
                store.close()
                store = open_store(database_url)
        store.ingest_journal(session.id, have, data[have:])
        want = expected(lines)
        summaries = store.series_summaries([session.id]).get(session.id, {})
        assert set(summaries) == set(want)
        for key, points in want.items():
            assert summaries[key]._asdict() == summary_of(points), key
            got = store.metric_points(session.id, key)
            assert [(p.step, p.value) for p in got] == [(s, v) for s, v, _ in in_read_order(points)], key
        assert store.get_session(session.name).journal_offset == len(data)
    finally:
        store.close()


# -- reads of awkward lengths ------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 127, 128, 129, 1024, 1025, 3000])
def test_a_series_of_any_length_reads_back_whole_in_order(store, n):
    session = new_session(store)
    data = b"".join(metrics_line(i, {"loss": 1.0 / (i + 1), **({"acc": 0.5} if i % 2 else {})}, 1000.0 + i)
                    for i in range(n))
    store.ingest_journal(session.id, 0, data[:len(data) // 2 + 1][:data[:len(data) // 2 + 1].rfind(b"\n") + 1])
    store.ingest_journal(session.id, 0, data)  # overlapping resend: nothing twice
    got = store.metric_points(session.id, "loss")
    assert [(p.step, p.walltime, p.value) for p in got] == [(float(i), 1000.0 + i, 1.0 / (i + 1)) for i in range(n)]
    assert store.series_keys(session.id) == ({"loss": n, "acc": n // 2} if n > 1 else {"loss": n} if n else {})
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT c.seq, c.n FROM point_chunks c JOIN series s ON s.id = c.series_id"
                                 " WHERE s.session_id = :x AND s.key = 'loss' ORDER BY c.seq"), {"x": session.id}).all()
    assert [r[1] for r in rows] == [min(packed.CHUNK, n - i) for i in range(0, n, packed.CHUNK)]
    assert [r[0] for r in rows] == list(range(len(rows)))
    out = store.downsampled_series(session.id, "loss", buckets=100)
    assert out["count"] == n and (n == 0 or (out["x"][0] == 0.0 and out["x"][-1] == n - 1))


def test_a_million_point_series_reads_in_chunks_never_whole(store):
    session = new_session(store)
    n = 1_000_000
    lines = b"".join(b'{"k":"m","w":%d.5,"step":%d,"s":false,"v":{"loss":%d.25}}\n' % (i, i, i % 1000) for i in range(n))
    offset = 0
    while offset < len(lines):  # the supervisor's 8 MiB posts
        cut = lines.rfind(b"\n", offset, offset + (8 << 20)) + 1
        offset = store.ingest_journal(session.id, offset, lines[offset:cut])
    reader = store.read_series(session.id, "loss")
    assert reader.count == n
    total, biggest, last_step = 0, 0, -1.0
    for steps, walls, values in reader.columns("steps", "walls", "vals"):
        biggest = max(biggest, len(steps))
        assert steps[0] == last_step + 1 and np.all(np.diff(steps) == 1)
        assert np.array_equal(values, steps % 1000 + 0.25) and np.array_equal(walls, steps + 0.5)
        total, last_step = total + len(steps), steps[-1]
    assert total == n and biggest == packed.CHUNK  # one chunk in memory at a time
    summary = store.series_summaries([session.id])[session.id]["loss"]
    assert (summary.count, summary.max_value, summary.max_step, summary.min_step, summary.last_step) == (n, 999.25, 999.0, 0.0, n - 1.0)
    out = store.downsampled_series(session.id, "loss", buckets=500)
    assert out["count"] == n and len(out["x"]) <= 500 and max(out["y"]) == 999.25 and min(out["y"]) == 0.25


def test_a_series_out_of_step_order_reads_merged_in_bounded_groups(store):
    """A resumed session reports steps again from its checkpoint: read back in step order,
    report order among equal steps."""
    session = new_session(store)
    steps = list(range(0, 3000)) + list(range(2000, 2500)) + [None] + list(range(2500, 4000))
    data = b"".join(metrics_line("x" if s is None else s, {"loss": float(i)}) for i, s in enumerate(steps))
    store.ingest_journal(session.id, 0, data)
    got = [(p.step, p.value) for p in store.metric_points(session.id, "loss")]
    want = sorted(((None if s is None else float(s), float(i)) for i, s in enumerate(steps)),
                  key=lambda p: (-math.inf if p[0] is None else p[0], p[1]))
    assert got == want
    reader = store.read_series(session.id, "loss")
    assert not reader.ordered and len(reader.groups) > 1  # the chunks before step 2000 stand alone


def test_chunk_blobs_come_in_postgresqls_binary_format_and_read_the_same(store):
    """Reads of the packed blobs ask PostgreSQL for binary results (hex-encoded text costs
    more than the query): both read paths, ordered and not, streamed and not; every other
    statement keeps text. SQLite reads the same points by its one path."""
    from sqlalchemy import event

    session = new_session(store)
    steps = list(range(3000)) + list(range(1000, 1500))  # the second run makes a series out of order
    store.ingest_journal(session.id, 0, b"".join(metrics_line(s, {"loss": i + 0.5, "acc": "text" if i == 7 else 0.25},
                                                              1000.0 + i) for i, s in enumerate(steps)))
    formats = []

    def seen(_conn, cursor, statement, _params, _context, _many):
        formats.append((getattr(cursor, "format", None), bool(re.search(r"point_chunks\.(steps|walls|vals|blocks)", statement))))

    event.listen(store.engine, "after_cursor_execute", seen)
    try:
        loss = store.metric_points(session.id, "loss")
        acc = store.metric_points(session.id, "acc")
        graph = store.downsampled_many([(session.id, "loss"), (session.id, "acc")], buckets=10)
    finally:
        event.remove(store.engine, "after_cursor_execute", seen)
    assert [p.value for p in loss] == [i + 0.5 for i, _ in sorted(enumerate(steps), key=lambda p: (p[1], p[0]))]
    assert [p.step for p in acc] == sorted(float(s) for s in steps) and acc[0].value == 0.25
    assert {p.value for p in acc} == {0.25, "text"}
    assert graph[0]["count"] == len(steps) and max(graph[0]["y"]) == len(steps) - 0.5
    assert store.read_series(session.id, "acc").ordered is False and graph[1]["count"] == len(steps) - 1
    if store.engine.dialect.name == "postgresql":
        from psycopg.pq import Format

        blob_reads = [f for f, blobs in formats if blobs]
        assert len(blob_reads) >= 4 and set(blob_reads) == {Format.BINARY}
        assert {f for f, blobs in formats if not blobs} == {Format.TEXT}


# -- the downsampler --------------------------------------------------------------------------
finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(points=st.lists(st.tuples(finite, st.sampled_from([0.0, 1.0, 2.5]) | finite), max_size=300),
       budget=st.integers(1, 60))
def test_the_numpy_downsampler_keeps_exactly_the_reference_points(points, budget):
    x = np.array([p[0] for p in points], dtype=np.float64)
    y = np.array([p[1] for p in points], dtype=np.float64)
    kx, ky = packed.minmax(x, y, budget)
    assert list(zip(kx.tolist(), ky.tolist())) == minmax_downsample(points, budget)


# -- the column-at-a-time path equals the line-by-line one ---------------------------------------
plain_lines = st.lists(st.tuples(
    st.integers(-10, 10**6) | st.floats(-1e9, 1e9, allow_nan=False),
    st.dictionaries(st.sampled_from(["loss", "acc", "lr", "val/acc"]),
                    st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-10**9, 10**9), max_size=4),
    st.booleans()), min_size=1, max_size=300)


@settings(max_examples=30, deadline=None, suppress_health_check=FIXTURE_OK)
@given(lines=plain_lines, odd=st.sampled_from([None, b'{"k":"m","w":1.0,"step":1,"v":{"x":"text"}}\n', b"garbage\n"]))
def test_plain_pieces_taken_a_column_at_a_time_store_what_line_by_line_stores(store, monkeypatch, lines, odd):
    from nsml.store.sql import metrics

    data = b"".join((json.dumps({"k": "m", "w": 1000.0 + i, "step": step, "s": flag, "v": values}) + "\n").encode()
                    for i, (step, values, flag) in enumerate(lines))
    if odd:  # a line the column path does not take: that piece goes line by line
        data = data + odd + data
    fast, slow = new_session(store), new_session(store)
    store.ingest_journal(fast.id, 0, data)
    with monkeypatch.context() as m:
        m.setattr(metrics, "_plain", lambda items: None)
        store.ingest_journal(slow.id, 0, data)
    a, b = store.get_session(fast.name), store.get_session(slow.name)
    assert (a.summary, a.last_values, a.journal_offset) == (b.summary, b.last_values, b.journal_offset)
    assert list(a.last_values) == list(b.last_values) and list(a.summary) == list(b.summary)  # key order too
    assert store.series_summaries([fast.id]).get(fast.id) == store.series_summaries([slow.id]).get(slow.id)
    for key in store.series_keys(fast.id):
        assert store.metric_points(fast.id, key) == store.metric_points(slow.id, key)
    assert store.series_keys(fast.id) == store.series_keys(slow.id)


# -- batch lines (report()'s encoder, nsml/client/journal.py) equal the lines they stand for ------
batch_value = (st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-10**9, 10**9)
               | st.sampled_from([None, True, "text", float("nan"), 2 ** 80]))
batch_runs = st.lists(st.tuples(
    st.lists(st.sampled_from(["loss", "acc", "lr", "val/acc"]), min_size=1, max_size=4, unique=True),
    st.booleans(),  # with a step column
    st.lists(st.tuples(st.integers(0, 10**6) | st.floats(0, 1e6) | st.none(), st.lists(batch_value, min_size=4, max_size=4)),
             min_size=1, max_size=200)), min_size=1, max_size=4)


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(runs=batch_runs)
def test_batch_lines_store_what_the_records_they_stand_for_store(store, monkeypatch, runs):
    from nsml.core import spool
    from nsml.store.sql import metrics

    batched, expanded, wall = [], [], 1000.0
    for keys, stepped, rows in runs:
        names = (["step"] if stepped else []) + keys + ["walltime"]
        table = []
        for step, values in rows:
            wall += 1.0
            table.append(([step] if stepped else []) + values[:len(keys)] + [wall])
        line = {"k": spool.BATCH, "c": names, "r": table}
        batched.append(json.dumps(line) + "\n")
        expanded.extend(json.dumps(record) + "\n" for record in spool.batch_records(line))
    fast, slow = new_session(store), new_session(store)
    notes_fast, notes_slow = [], []
    store.ingest_journal(fast.id, 0, "".join(batched).encode(), notes_fast)
    with monkeypatch.context() as m:
        m.setattr(metrics, "_plain", lambda items: None)
        store.ingest_journal(slow.id, 0, "".join(expanded).encode(), notes_slow)
    a, b = store.get_session(fast.name), store.get_session(slow.name)
    assert (a.summary, a.last_values, a.journal_offset > 0) == (b.summary, b.last_values, True)
    assert list(a.last_values) == list(b.last_values)
    assert store.series_summaries([fast.id]).get(fast.id) == store.series_summaries([slow.id]).get(slow.id)
    assert store.series_keys(fast.id) == store.series_keys(slow.id)
    for key in store.series_keys(fast.id):
        assert store.metric_points(fast.id, key) == store.metric_points(slow.id, key)
    assert [about for about, _ in notes_fast] == [about for about, _ in notes_slow]


@pytest.mark.parametrize("line", [
    {"k": "b", "c": "step", "r": []}, {"k": "b", "c": ["step", "x"], "r": [[1, 2.0]]},  # no walltime
    {"k": "b", "c": ["x", "x", "walltime"], "r": [[1, 2, 3.0]]}, {"k": "b", "c": [1, "walltime"], "r": [[1, 3.0]]},
    {"k": "b", "c": ["x", "walltime"], "r": [[1, 2, 3.0]]}, {"k": "b", "c": ["x", "walltime"], "r": "rows"},
    {"k": "b", "c": ["x", "walltime"], "r": [{"x": 1}]}, {"k": "b"}])
def test_a_malformed_batch_line_is_skipped_with_a_note_and_the_rest_kept(store, line):
    session = new_session(store)
    good = b'{"k":"m","w":1.0,"step":1,"s":false,"v":{"loss":0.5}}\n'
    notes = []
    data = good + json.dumps(line).encode() + b"\n" + good.replace(b'"step":1', b'"step":2')
    assert store.ingest_journal(session.id, 0, data, notes) == len(data)
    assert [p.step for p in store.metric_points(session.id, "loss")] == [1, 2]
    assert [about for about, _ in notes] == ["batch"]
