"""Downsampling many series at once (what the overlaid graph reads): the same answers as one
series at a time, whatever mix of series is asked for, and the vectorised min/max decimation
equal to packed.minmax, point for point."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from nsml.core.entities import FileEntry
from nsml.core.resources import Resources
from nsml.store import packed
from nsml.store.sql.models import SeriesRow
from nsml.store.sql.views import minmax_many


def new_session(store):
    return store.create_session("alice", "digits", "main.py", "", Resources(1, 1 << 30, 0), "", "",
                                [FileEntry("main.py", 1, "0" * 64)])


def ingest(store, session, rows) -> None:
    data = "".join(json.dumps({"k": "m", "w": w, "step": step, "v": v}) + "\n" for step, w, v in rows).encode()
    store.ingest_journal(session.id, store.get_session(session.name).journal_offset, data)


def wave(i: int, phase: float = 0.0) -> float:
    return math.sin(i / 90 + phase) + 0.01 * (i % 7)


@pytest.fixture
def mixed(store):
    """Sessions of different starts and lengths: long series (block extremes), short ones (raw
    points), a resumed run reporting steps again, a text series, one with gaps of NaN."""
    a, b, c = new_session(store), new_session(store), new_session(store)
    rows = [(i, 1000.0 + i * 0.5, {"loss": wave(i), "acc": wave(i, 1.0)}) for i in range(6_000)]
    rows[4_321] = (4_321, 1000.0 + 4_321 * 0.5, {"loss": 77.0, "acc": wave(4_321, 1.0)})
    ingest(store, a, rows)
    ingest(store, b, [(i, 50_000.0 + i, {"loss": wave(i, 2.0), "note": "warm"}) for i in range(700)])
    ingest(store, b, [(i, 50_700.0 + i, {"loss": wave(i, 3.0)}) for i in range(300, 3_500)])  # resumed at step 300
    ingest(store, c, [(i, 9_000.0 + i, {"loss": float("nan") if i % 5 == 0 else wave(i), "lr": 0.1}) for i in range(2_500)])
    return [(a.id, "loss"), (a.id, "acc"), (b.id, "loss"), (b.id, "note"), (c.id, "loss"), (c.id, "lr"),
            (a.id, "missing"), (999_999, "loss"), (a.id, "loss")]


def lists(answer: dict) -> dict:
    return {**answer, "x": list(answer["x"]), "y": list(answer["y"])}


@pytest.mark.parametrize("view", [
    dict(x="step"), dict(x="step", buckets=20), dict(x="step", xmin=1_000, xmax=2_999.5, buckets=30),
    dict(x="step", xmin=400.5, xmax=460), dict(x="walltime", buckets=40), dict(x="relative", buckets=25),
    dict(x="relative", xmin=100, xmax=1_900, buckets=20), dict(x="walltime", xmin=1e9, xmax=2e9),
    dict(x="step", buckets=3),
])
def test_many_series_at_once_answer_as_one_at_a_time(store, mixed, view):
    many = store.downsampled_many(mixed, **view)
    assert len(many) == len(mixed)
    for pair, got in zip(mixed, many):
        assert isinstance(got["x"], np.ndarray) and got["x"].dtype == np.float64
        assert lists(got) == store.downsampled_series(*pair, **view), (pair, view)
    assert many[-1]["count"] == many[0]["count"]  # a pair asked twice is answered twice


def test_the_spike_and_the_ends_survive_in_a_batch(store, mixed):
    out = store.downsampled_many(mixed, buckets=20)
    a_loss = out[0]
    assert a_loss["exact"] is False and a_loss["count"] == 6_000 and len(a_loss["x"]) <= 20
    assert 77.0 in a_loss["y"] and a_loss["x"][0] == 0 and a_loss["x"][-1] == 5_999
    for empty in (out[3], out[6], out[7]):  # text only; no such key; no such session
        assert lists(empty) == {"x": [], "y": [], "count": 0, "exact": True}
    with pytest.raises(ValueError):
        store.downsampled_many(mixed, x="epoch")
    assert store.downsampled_many([]) == []


# -- the decimation itself, against packed.minmax ----------------------------------------------
def series(draw_x, draw_y):
    return st.lists(st.tuples(draw_x, draw_y), max_size=120)


coarse = series(st.integers(0, 15).map(float), st.integers(-2, 2).map(float))  # many ties
fine = series(st.floats(-1e6, 1e6), st.floats(-1e3, 1e3))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(coarse, fine, st.just([]), st.just([(3.0, 1.0)] * 9)), max_size=6),
       st.sampled_from([1, 2, 3, 4, 5, 6, 9, 16, 50, 200]))
def test_minmax_many_picks_what_packed_minmax_picks(pairs, budget):
    xs = [np.array([p[0] for p in s], dtype=np.float64) for s in pairs]
    ys = [np.array([p[1] for p in s], dtype=np.float64) for s in pairs]
    got = minmax_many(xs, ys, budget)
    assert len(got) == len(pairs)
    for (gx, gy), x, y in zip(got, xs, ys):
        wx, wy = packed.minmax(x, y, budget)
        assert np.array_equal(gx, wx) and np.array_equal(gy, wy)


def test_minmax_many_over_more_series_than_one_pass_holds():
    """Past ~2**20 intervals the series are taken a slice at a time; the answers do not change."""
    rng = np.random.default_rng(7)
    xs = [rng.uniform(0, 100, 40) for _ in range(300)]
    ys = [rng.normal(size=40) for _ in range(300)]
    budget = 10_000  # 4,999 intervals a series: 209 series a pass
    small = minmax_many(xs, ys, 30)
    for (gx, gy), x, y in zip(small, xs, ys):
        wx, wy = packed.minmax(x, y, 30)
        assert np.array_equal(gx, wx) and np.array_equal(gy, wy)
    xs = [rng.uniform(0, 100, budget + 5) for _ in range(250)]
    ys = [rng.normal(size=budget + 5) for _ in range(250)]
    for (gx, gy), x, y in zip(minmax_many(xs, ys, budget), xs, ys):
        wx, wy = packed.minmax(x, y, budget)
        assert np.array_equal(gx, wx) and np.array_equal(gy, wy)


def test_sessions_named_finds_many_in_one_call_and_leaves_out_the_rest(store):
    a, b = new_session(store), new_session(store)
    found = store.sessions_named([a.name, b.name, "alice/digits/99", "not a name", "bob/digits/1", "alice/digits/" + "9" * 40])
    assert {name: s.id for name, s in found.items()} == {a.name: a.id, b.name: b.id}
    assert store.sessions_named([]) == {}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)  # the aggregated read is PostgreSQL's
@pytest.mark.parametrize("view", [
    dict(x="step"), dict(x="step", buckets=20), dict(x="step", xmin=1_000, xmax=2_999.5, buckets=30),
    dict(x="walltime", buckets=40), dict(x="relative", buckets=25), dict(x="relative", xmin=100, xmax=1_900, buckets=20),
])
def test_postgresqls_one_row_a_series_reads_what_a_row_a_chunk_reads(store, mixed, view, monkeypatch):
    """On PostgreSQL the chunks in range come aggregated, one row a series (string_agg); the
    answers are those of the row-a-chunk read SQLite makes, which PostgreSQL can make too."""
    assert store.engine.dialect.name == "postgresql"
    aggregated = store.downsampled_many(mixed, **view)
    monkeypatch.setattr(store, "_aggregate_chunks", False)
    for got, want in zip(aggregated, store.downsampled_many(mixed, **view)):
        assert lists(got) == lists(want)
        assert got["x"].dtype == want["x"].dtype == np.float64
    assert any(not a["exact"] for a in aggregated)  # block extremes were read, not only raw points


def test_chunk_tables_agree_between_the_two_reads(store, mixed, monkeypatch):
    """The tables _chunk_tables builds, per series, from either read (on SQLite only the row a
    chunk one runs), over the whole axis and a range."""
    with store.engine.connect() as conn:
        series = [r[0] for r in conn.execute(select(SeriesRow.id))]
    shapes = [False, True] if store.engine.dialect.name == "postgresql" else [False]
    for by_step in (True, False):
        for bounds in ((-math.inf, math.inf), (1_000.0, 2_999.5) if by_step else (1_500.0, 9_500.0)):
            ranges = {s: bounds for s in series + [999_999]}
            tables = []
            for aggregate in shapes:
                monkeypatch.setattr(store, "_aggregate_chunks", aggregate)
                with store.engine.connect() as conn:
                    tables.append(store._chunk_tables(conn, ranges, by_step))
            rows = tables[0]
            assert rows and 999_999 not in rows
            for seq, counted, x0, x1, first_block, extremes in rows.values():
                assert len(seq) == len(counted) == len(x0) == len(x1) == len(first_block) - 1
                assert first_block[-1] == len(extremes) and extremes.shape[1] == 6 and (counted > 0).all()
                assert (np.diff(seq) > 0).all() and (x1 >= bounds[0]).all() and (x0 <= bounds[1]).all()
            for other in tables[1:]:
                assert other.keys() == rows.keys()
                for sid, table in rows.items():
                    for a, b in zip(table, other[sid]):
                        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), sid
