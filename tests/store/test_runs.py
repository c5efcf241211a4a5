"""The runs table and session parameters, on SQLite and PostgreSQL (the `store` fixture): the
params a session is created with, merging more, bounds; columns from the series summaries;
sorting (nulls last both ways, ties by id) and paging in the database; the listing's visibility."""

import itertools
import json
import random

import pytest
from sqlalchemy import event

from nsml.core.entities import FileEntry
from nsml.core.errors import InvalidInput, NotFound
from nsml.core.params import MAX_PARAMS, Column
from nsml.core.policy import Action, can, session_scope
from nsml.core.resources import Resources


def new_session(store, args="", owner="alice", **kw):
    return store.create_session(owner, "digits", "main.py", args, Resources(1, 1 << 30, 0), "", "",
                                [FileEntry("main.py", 1, "0" * 64)], **kw)


def report(store, session, *points) -> None:
    """(step, {key: value}) points, in one journal post after what is there."""
    offset = store.session_by_id(session.id).journal_offset
    data = "".join(json.dumps({"k": "m", "w": 1.7e9 + step, "step": step, "v": v}) + "\n" for step, v in points)
    store.ingest_journal(session.id, offset, data.encode())


def names(rows) -> list[str]:
    return [r.name for r in rows]


# -- parameters ------------------------------------------------------------------------------
def test_a_session_gets_the_typed_parameters_of_its_arguments(store):
    s = new_session(store, "--lr 0.01 --batch-size=32 --opt adam --amp --note 'two words' positional")
    assert store.session_params([s.id]) == {s.id: {"amp": True, "batch_size": 32, "lr": 0.01, "note": "two words",
                                                   "opt": "adam"}}
    bare = new_session(store, "")
    assert store.session_params([bare.id, 10**6]) == {bare.id: {}, 10**6: {}}


def test_set_params_merges_and_a_key_given_again_replaces_its_value(store):
    s = new_session(store, "--lr 0.1 --opt adam")
    got = store.set_params(s.id, {"lr": 0.2, "epochs": 10, "schedule": None, "layers": [64, 64]})
    assert got == {"epochs": 10, "layers": "[64, 64]", "lr": 0.2, "opt": "adam", "schedule": None}
    assert store.session_params([s.id])[s.id] == got
    assert store.set_params(s.id, {}) == got


def test_set_params_is_bounded_and_changes_nothing_when_refused(store):
    s = new_session(store, "--lr 0.1")
    with pytest.raises(InvalidInput, match="characters long"):
        store.set_params(s.id, {"ok": 1, "big": "x" * 5000})
    with pytest.raises(InvalidInput, match="Parameter names"):
        store.set_params(s.id, {"k" * 500: 1})
    store.set_params(s.id, {f"k{i}": i for i in range(MAX_PARAMS - 1)})  # 256 with lr
    with pytest.raises(InvalidInput, match=f"at most {MAX_PARAMS}"):
        store.set_params(s.id, {"one_more": 1})
    assert len(store.session_params([s.id])[s.id]) == MAX_PARAMS and "ok" not in store.session_params([s.id])[s.id]
    store.set_params(s.id, {"lr": 0.5})  # replacing one is not one more
    with pytest.raises(NotFound):
        store.set_params(10**6, {"lr": 1})


def test_parameters_go_with_their_session(store):
    s = new_session(store, "--lr 0.1")
    store.delete_session(s.id)
    assert store.session_params([s.id]) == {s.id: {}}


# -- the table -------------------------------------------------------------------------------
@pytest.fixture
def table(store):
    """Five sessions: lr and loss where they have them, one with a text lr, one with nothing."""
    rows = [("--lr 0.1 --opt adam", [(0, 2.0), (1, 0.5), (2, 0.9)]),
            ("--lr 0.01 --opt sgd", [(0, 3.0), (1, 0.2)]),
            ("--lr auto", [(0, 1.0)]),
            ("--lr 0.001", []),
            ("", [(0, 4.0), (1, 4.5)])]
    made = []
    for args, losses in rows:
        s = new_session(store, args)
        if losses:
            report(store, s, *[(step, {"loss": v, "acc": 1 - v / 10}) for step, v in losses])
        made.append(s)
    return store, made


def test_rows_hold_the_asked_columns_from_the_summaries(table):
    store, made = table
    total, rows = store.runs_table(params=["lr", "opt", "missing"], metrics=[("loss", "last"), ("loss", "min"),
                                                                            ("loss", "max"), ("nope", "last")])
    assert total == 5 and names(rows) == names(reversed(made))  # newest first by default
    first = rows[-1]
    assert (first.id, first.status) == (made[0].id, "queued") and first.created == made[0].created
    assert first.params == {"lr": 0.1, "opt": "adam", "missing": None}
    assert first.metrics == {"loss": {"last": 0.9, "min": 0.5, "max": 2.0}, "nope": {"last": None}}
    assert rows[1].params == {"lr": 0.001, "opt": None, "missing": None}
    assert rows[1].metrics == {"loss": {"last": None, "min": None, "max": None}, "nope": {"last": None}}
    summaries = store.series_summaries([s.id for s in made])
    for row in rows:  # what the summaries say, exactly
        if row.id in summaries:
            s = summaries[row.id]["loss"]
            assert row.metrics["loss"] == {"last": s.last_value, "min": s.min_value, "max": s.max_value}
    _, bare = store.runs_table(limit=2)
    assert bare[0].params == {} and bare[0].metrics == {}


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorted_by_a_metric_with_nulls_last_both_ways(table, order):
    store, made = table
    _, rows = store.runs_table(metrics=[("loss", "min")], sort=Column("metric", "loss", "min"), order=order)
    ranked = sorted((r for r in rows if r.metrics["loss"]["min"] is not None), key=lambda r: r.metrics["loss"]["min"],
                    reverse=order == "desc")
    assert names(rows[:4]) == names(ranked) and rows[4].id == made[3].id  # the one without loss: last


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorted_by_a_parameter_numbers_then_text_then_none(table, order):
    store, made = table
    _, rows = store.runs_table(params=["lr"], sort=Column("param", "lr"), order=order)
    want = [0.001, 0.01, 0.1] if order == "asc" else [0.1, 0.01, 0.001]
    assert [r.params["lr"] for r in rows] == [*want, "auto", None]


def test_sorted_by_session_fields(table):
    store, made = table
    for key in ("id", "created", "name"):
        assert names(store.runs_table(sort=Column("session", key), order="asc")[1]) == names(made)
        assert names(store.runs_table(sort=Column("session", key), order="desc")[1]) == names(reversed(made))
    _, by_start = store.runs_table(sort=Column("session", "started"), order="desc")
    assert len(by_start) == 5  # none started: all null, then by id
    assert names(by_start) == names(reversed(made))


def test_ties_go_by_id_and_pages_cover_the_table_once(store):
    made = [new_session(store, f"--group {i % 3}") for i in range(23)]
    for s in made[:17]:
        report(store, s, (0, {"acc": float(s.id % 4)}))
    for sort in (Column("param", "group"), Column("metric", "acc", "last"), Column("session", "created")):
        for order in ("asc", "desc"):
            _, whole = store.runs_table(params=["group"], metrics=[("acc", "last")], sort=sort, order=order, limit=100)
            pages = [store.runs_table(params=["group"], metrics=[("acc", "last")], sort=sort, order=order,
                                      limit=5, offset=k)[1] for k in range(0, 25, 5)]
            assert names(sum(pages, [])) == names(whole) and len(whole) == 23
            if sort.kind == "param":  # equal groups by id, in the order asked
                ids = [r.id for r in whole if r.params["group"] == 1]
                assert ids == sorted(ids, reverse=order == "desc")
    assert store.runs_table(limit=5, offset=100) == (23, [])
    assert store.runs_table(limit=0)[0] == 23


def test_hidden_sessions_are_left_out_and_the_count_is_what_the_scope_reads(store):
    for name in ("alice", "bob", "eve", "root"):
        store.add_user(name, admin=name == "root")
    store.add_team("vision", "alice")
    store.join_team("vision", "bob")
    for visibility, team in itertools.product(("private", "team", "public"), ("vision", "")):
        s = new_session(store, "--lr 0.1", team=team, visibility=visibility)
        report(store, s, (0, {"loss": random.random()}))
    hidden = new_session(store, "--lr 0.2", visibility="public")
    store.hide_session(hidden.id, 1.0)
    everything = [s for s in store.list_sessions()]
    for name in ("alice", "bob", "eve", "root"):
        actor = store.actor(name)
        total, rows = store.runs_table(params=["lr"], metrics=[("loss", "last")], sort=Column("metric", "loss", "min"),
                                       scope=session_scope(actor), limit=100)
        readable = {s.id for s in everything if can(actor, Action.READ, s)}
        assert total == len(readable) and {r.id for r in rows} == readable, name
        assert hidden.id not in {r.id for r in rows}
        assert (total, {r.id for r in rows}) == (lambda t, p: (t, {s.id for s in p}))(
            *store.search_sessions(scope=session_scope(actor), limit=100))  # the listing's rule, the same


@pytest.mark.parametrize("kwargs", [
    {"params": ["k" * 300]}, {"params": [""]}, {"metrics": [("loss", "mean")]}, {"metrics": [("", "last")]},
    {"sort": Column("session", "id"), "order": "up"}, {"limit": 1001}, {"limit": -1}, {"offset": -1},
    {"params": [f"k{i}" for i in range(101)]},
])
def test_bad_columns_and_pages_are_invalid_input(store, kwargs):
    with pytest.raises(InvalidInput):
        store.runs_table(**kwargs)


def test_a_page_is_five_queries_however_many_sessions_and_columns(store):
    """Only the page's rows are built: a count, the sorted page, its params, its metrics, its tags."""
    made = [new_session(store, f"--lr {i / 100} --seed {i}") for i in range(30)]
    for s in made:
        report(store, s, (0, {"loss": 1.0 / s.id, "acc": s.id / 100}))
    statements = []
    listen = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(store.engine, "before_cursor_execute", listen)
    try:
        total, rows = store.runs_table(params=["lr", "seed"], metrics=[("loss", "min"), ("acc", "last")],
                                       sort=Column("metric", "acc", "last"), order="desc", limit=10, offset=5)
    finally:
        event.remove(store.engine, "before_cursor_execute", listen)
    assert total == 30 and [r.metrics["acc"]["last"] for r in rows] == sorted((s.id / 100 for s in made), reverse=True)[5:15]
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 5
    assert not any("point_chunks" in s for s in statements)
