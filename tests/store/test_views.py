"""The dashboard's reads on a real SQLite store: session search, keys of many sessions, and
downsampled series (spikes kept, x order, point budget, zooming to finer data, live growth)."""

import json
import math
import shutil

import pytest
from sqlalchemy import text

from nsml.core.downsample import minmax_downsample
from nsml.core.entities import FileEntry
from nsml.core.resources import Resources
from nsml.core.states import Status
from nsml.store.sql import open_store




def new_session(store, owner="alice", dataset="digits", args="", memo=""):
    return store.create_session(owner, dataset, "main.py", args, Resources(1, 1 << 30, 0), memo, "",
                                [FileEntry("main.py", 1, "0" * 64)])


def journal(rows) -> bytes:
    return "".join(json.dumps({"k": "m", "w": w, "step": step, "v": v}) + "\n" for step, w, v in rows).encode()


def ingest(store, session, rows, chunks=1) -> None:
    """Ingest the rows as the supervisor would: appended to the journal, in `chunks` posts."""
    offset = store.get_session(session.name).journal_offset
    data = journal(rows)
    cut = [len(data) * i // chunks for i in range(chunks + 1)]
    for a, b in zip(cut, cut[1:]):
        b = data.rfind(b"\n", 0, b) + 1 if b < len(data) else b
        a = data.rfind(b"\n", 0, a) + 1 if a else 0
        store.ingest_journal(session.id, offset + a, data[a:b])


def loss(i: int) -> float:
    return math.sin(i / 700) + 0.01 * (i % 13)


# -- search ----------------------------------------------------------------------------------
def test_search_matches_name_memo_and_args_case_insensitively_newest_first(store):
    a1 = new_session(store, "alice", "digits", args="--lr 0.1", memo="Baseline run")
    new_session(store, "bob", "digits", args="--lr 0.01")
    a2 = new_session(store, "alice", "mnist", args="--batch 64_x", memo="")
    b2 = new_session(store, "bob", "mnist", memo="try 100% dropout")
    total, page = store.search_sessions("ALICE/")
    assert total == 2 and [s.id for s in page] == [a2.id, a1.id]  # newest first
    assert store.search_sessions("baseline")[1][0].id == a1.id
    assert [s.name for s in store.search_sessions("bob/digits/1")[1]] == ["bob/digits/1"]
    assert store.search_sessions("--lr 0.0")[0] == 1  # args
    assert [s.id for s in store.search_sessions("100%")[1]] == [b2.id]  # % taken literally
    assert [s.id for s in store.search_sessions("64_x")[1]] == [a2.id]  # _ taken literally
    assert store.search_sessions("4_x")[0] == 1 and store.search_sessions("6__")[0] == 0
    assert store.search_sessions("nothing-like-this") == (0, [])


def test_search_filters_and_pages(store):
    made = [new_session(store, owner, ds) for owner in ("alice", "bob") for ds in ("digits", "mnist") for _ in range(5)]
    store.move_session(made[0].id, Status.RUNNING)
    total, page = store.search_sessions(dataset="digits", owner="bob", limit=2)
    assert total == 5 and [s.name for s in page] == ["bob/digits/5", "bob/digits/4"]
    total, page = store.search_sessions(dataset="digits", owner="bob", offset=4, limit=2)
    assert total == 5 and [s.name for s in page] == ["bob/digits/1"]
    assert store.search_sessions(statuses={"running"})[0] == 1
    assert store.search_sessions(statuses={"queued", "running"}, limit=0) == (20, [])
    total, everything = store.search_sessions(limit=100)
    assert total == 20 and [s.id for s in everything] == sorted((s.id for s in made), reverse=True)


# -- keys ------------------------------------------------------------------------------------
def test_series_keys_of_many_sessions(store):
    a, b, c = new_session(store), new_session(store), new_session(store)
    ingest(store, a, [(0, 1.0, {"loss": 1.0, "acc": 0.5}), (1, 2.0, {"loss": 0.5})])
    ingest(store, b, [(0, 1.0, {"val/loss": 2.0})])
    assert store.keys_of_sessions([a.id, b.id, c.id, 999]) == {a.id: ["acc", "loss"], b.id: ["val/loss"], c.id: [], 999: []}
    assert store.series_keys(a.id) == {"acc": 1, "loss": 2}  # one session's keys with their point counts


# -- downsampling ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def long_store(tmp_path_factory, migrated_db):
    """A store holding 100,000 steps of `loss` with one spike up and one down, ingested in 3
    posts (once per module: the tests below only read it)."""
    path = tmp_path_factory.mktemp("long") / "nsml.db"
    shutil.copyfile(migrated_db, path)
    s = open_store(f"sqlite:///{path}")
    session = new_session(s)
    rows = [(i, 1000.0 + i * 0.5, {"loss": loss(i)}) for i in range(100_000)]
    rows[61_234] = (61_234, 1000.0 + 61_234 * 0.5, {"loss": 1000.0})
    rows[7_777] = (7_777, 1000.0 + 7_777 * 0.5, {"loss": -1000.0})
    ingest(s, session, rows, chunks=3)
    yield s, session
    s.close()


@pytest.fixture
def long_run(long_store):
    return long_store[1]


def check_shape(out, buckets):
    assert len(out["x"]) == len(out["y"]) <= buckets
    assert out["x"] == sorted(out["x"])


def test_a_spike_in_100k_points_survives_in_x_order_within_the_budget(long_store):
    store, long_run = long_store
    out = store.downsampled_series(long_run.id, "loss", buckets=1000)
    check_shape(out, 1000)
    assert len(out["x"]) > 900
    assert out["count"] == 100_000 and out["exact"] is False
    points = dict(zip(out["x"], out["y"]))
    assert points[61_234.0] == 1000.0 and points[7_777.0] == -1000.0
    assert out["x"][0] == 0.0 and out["x"][-1] == 99_999.0  # the line starts and ends where the data does
    for x, y in points.items():  # every point returned is a real point
        if x not in (61_234.0, 7_777.0):
            assert y == pytest.approx(loss(int(x)))


def test_blocks_keep_the_extremes_of_every_interval_but_at_block_edges(long_store):
    store, long_run = long_store
    """Against the pure decimation of all raw points: the same envelope, interval by interval."""
    out = store.downsampled_series(long_run.id, "loss", buckets=200)
    raw = [(float(i), loss(i)) for i in range(100_000)]
    raw[61_234], raw[7_777] = (61_234.0, 1000.0), (7_777.0, -1000.0)
    ref = minmax_downsample(raw, 200)
    assert max(out["y"]) == max(y for _, y in ref) and min(out["y"]) == min(y for _, y in ref)
    # the envelope over each tenth of the range matches the reference's
    for k in range(10):
        lo, hi = k * 10_000, (k + 1) * 10_000
        ours = [y for x, y in zip(out["x"], out["y"]) if lo <= x < hi]
        theirs = [y for x, y in ref if lo <= x < hi]
        assert max(ours) == max(theirs) and min(ours) == min(theirs)


def test_zooming_in_returns_finer_data_and_exact_when_it_fits(long_store):
    store, long_run = long_store
    full = store.downsampled_series(long_run.id, "loss", buckets=1000)
    mid = store.downsampled_series(long_run.id, "loss", xmin=30_000, xmax=70_000, buckets=1000)
    check_shape(mid, 1000)
    assert all(30_000 <= x <= 70_000 for x in mid["x"])
    assert 61_234.0 in mid["x"] and mid["count"] == 40_001
    in_window = [x for x in full["x"] if 30_000 <= x <= 70_000]
    assert len(mid["x"]) > 2 * len(in_window)  # finer than the full view over the same range
    near = store.downsampled_series(long_run.id, "loss", xmin=40_000.5, xmax=40_899.5, buckets=1000)
    assert near["exact"] is True and near["count"] == 899
    assert near["x"] == [float(i) for i in range(40_001, 40_900)]
    assert near["y"] == pytest.approx([loss(i) for i in range(40_001, 40_900)])
    assert store.downsampled_series(long_run.id, "loss", xmin=200_000, xmax=300_000) == {"x": [], "y": [], "count": 0, "exact": True}


def test_walltime_and_relative_axes(long_store):
    store, long_run = long_store
    wall = store.downsampled_series(long_run.id, "loss", x="walltime", buckets=500)
    check_shape(wall, 500)
    assert wall["x"][0] == 1000.0 and wall["x"][-1] == 1000.0 + 99_999 * 0.5
    assert dict(zip(wall["x"], wall["y"]))[1000.0 + 61_234 * 0.5] == 1000.0
    rel = store.downsampled_series(long_run.id, "loss", x="relative", buckets=500)
    assert rel["x"] == [x - 1000.0 for x in wall["x"]] and rel["y"] == wall["y"]
    zoom = store.downsampled_series(long_run.id, "loss", x="relative", xmin=10.0, xmax=20.0)
    assert zoom["exact"] and zoom["x"] == [10.0 + 0.5 * i for i in range(21)]
    with pytest.raises(ValueError):
        store.downsampled_series(long_run.id, "loss", x="epoch")


def test_values_that_are_not_finite_numbers_are_skipped(store):
    session = new_session(store)
    values = [1.0, float("nan"), "text", float("inf"), 2.5, None, True, -float("inf"), 3, [1, 2]]
    lines = b"".join(
        json.dumps({"k": "m", "w": 10.0 + i, "step": i, "v": {"m": v}}).encode() + b"\n" for i, v in enumerate(values))
    store.ingest_journal(session.id, 0, lines)
    out = store.downsampled_series(session.id, "m")
    assert out == {"x": [0.0, 4.0, 8.0], "y": [1.0, 2.5, 3.0], "count": 3, "exact": True}
    assert store.downsampled_series(session.id, "missing") == {"x": [], "y": [], "count": 0, "exact": True}


def test_a_growing_series_is_read_in_full_each_time(store):
    """A running session: points arrive between reads, mid-block; every read sees them all."""
    session = new_session(store)
    step = 0
    for batch in (5, 300, 1, 127, 128, 2000, 40_000):
        ingest(store, session, [(i, float(i), {"loss": loss(i)}) for i in range(step, step + batch)])
        step += batch
        out = store.downsampled_series(session.id, "loss", buckets=400)
        assert out["count"] == step and out["x"][-1] == step - 1 and out["x"][0] == 0
        check_shape(out, 400)
        if step <= 400:
            assert out["exact"] and out["x"] == [float(i) for i in range(step)]
    top = max(range(step), key=loss)
    assert dict(zip(out["x"], out["y"]))[float(top)] == loss(top)


def test_a_sessions_chunks_go_with_it(store):
    long_run, other = new_session(store), new_session(store)
    for session in (long_run, other):
        ingest(store, session, [(i, float(i), {"loss": loss(i), "acc": 0.5}) for i in range(3_000)], chunks=2)
    store.delete_session(long_run.id)
    with store.engine.connect() as conn:
        left = conn.execute(text("SELECT DISTINCT s.session_id FROM point_chunks c JOIN series s ON s.id = c.series_id")).all()
    assert left == [(other.id,)]
    assert store.downsampled_series(other.id, "loss", buckets=300)["count"] == 3_000


def test_a_text_series_has_no_chart_until_numbers_come(store):
    session = new_session(store)
    ingest(store, session, [(i, float(i), {"status": "warming up"}) for i in range(500)])
    assert store.downsampled_series(session.id, "status") == {"x": [], "y": [], "count": 0, "exact": True}
    assert store.downsampled_series(session.id, "status", x="relative")["count"] == 0
    ingest(store, session, [(i, float(i), {"status": i * 0.5}) for i in range(500, 1500)])
    out = store.downsampled_series(session.id, "status", x="relative", buckets=5000)
    assert out["count"] == 1000 and out["exact"] and out["x"][0] == 0.0 and out["y"][-1] == 1499 * 0.5
    assert [p.value for p in store.metric_points(session.id, "status")][498:502] == ["warming up", "warming up", 250.0, 250.5]
