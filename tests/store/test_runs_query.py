"""Queries (nsml/core/query.py) compiled to SQL (nsml/store/sql/filters.py) over real sessions,
on SQLite and PostgreSQL (the `store` fixture); tags and notes."""

import pytest

from nsml.core import query
from nsml.core.errors import InvalidInput, NotFound
from nsml.core.states import SessionKind
from nsml.core.tags import MAX_TAGS, parse_changes
from nsml.core.entities import FileEntry
from nsml.core.resources import Resources
from tests.store.test_runs import report


def new_session(store, args="", owner="alice", memo="", **kw):
    return store.create_session(owner, "digits", "main.py", args, Resources(1, 1 << 30, 0), memo, "",
                                [FileEntry("main.py", 1, "0" * 64)], **kw)


@pytest.fixture
def lab(store):
    """Sessions with parameters, metrics, memos, tags and kinds to select among."""
    a = new_session(store, "--lr 0.1 --opt adam --hidden 64", memo="a wide net")
    b = new_session(store, "--lr 0.01 --opt sgd --hidden 128", memo="narrow")
    c = new_session(store, "--lr 0.001", owner="bob")
    d = new_session(store, "", kind=SessionKind.SUBMIT, source="alice/digits/1", memo="x'; DROP TABLE sessions; --")
    e = new_session(store, "--loss 5")  # a parameter named like b's metric
    report(store, a, (0, {"loss": 2.0, "val/acc": 0.5}), (1, {"loss": 0.5, "val/acc": 0.97}))
    report(store, b, (0, {"loss": 3.0, "val/acc": 0.4}), (1, {"loss": 0.1, "val/acc": 0.96}), (2, {"loss": 0.3}))
    report(store, c, (0, {"acc@vector:top1": 0.7}))
    store.tag_session(a.id, add=["baseline", "v2"])
    store.tag_session(b.id, add=["v2"])
    return {"a": a, "b": b, "c": c, "d": d, "e": e}


def select(store, lab, text):
    _, rows = store.runs_table(where_tree=query.parse(text), limit=100)
    by_id = {s.id: k for k, s in lab.items()}
    return sorted(by_id[r.id] for r in rows)


@pytest.mark.parametrize("text, want", [
    ("", ["a", "b", "c", "d", "e"]),
    ("lr < 0.05", ["b", "c"]),
    ("lr = 0.01", ["b"]),                       # the chip format, numbers as numbers
    ("lr != 0.01", ["a", "c"]),                 # only sessions that have lr
    ("opt = adam", ["a"]),
    ("opt ~ G", ["b"]),                         # substring, any case
    ("hidden >= 100", ["b"]),
    ("val/acc >= 0.95", ["a", "b"]),            # a metric's last value
    ("val/acc > 0.965", ["a"]),
    ("max(val/acc) > 0.965", ["a"]),
    ("min(loss) < 0.2", ["b"]),
    ("last(loss) < 0.4", ["b"]),
    ("loss < 1", ["a", "b"]),                   # e has a parameter loss=5: the parameter wins there
    ("loss = 5", ["e"]),
    ("metrics.loss < 1", ["a", "b"]),
    ("params.loss > 1", ["e"]),
    ("`acc@vector:top1` > 0.5", ["c"]),
    ("lr < 0.05 and val/acc >= 0.95", ["b"]),
    ("lr < 0.05 val/acc >= 0.95", ["b"]),       # side by side: and
    ("lr > 0.05 or user:bob", ["a", "c"]),
    ("not user:alice", ["c"]),
    ("user:bob or (tag:baseline and lr > 0)", ["a", "c"]),
    ("tag:v2", ["a", "b"]),
    ("tag:v2 not tag:baseline", ["b"]),
    ("tag ~ base", ["a"]),
    ("kind:submit", ["d"]),
    ("kind:train", ["a", "b", "c", "e"]),
    ("kind:automl", []),
    ("dataset:digits", ["a", "b", "c", "d", "e"]),
    ("dataset:other", []),
    ('memo ~ "WIDE"', ["a"]),
    ("memo:narrow", ["b"]),
    ("wide", ["a"]),                            # a bare word: name or memo
    ("bob/digits", ["c"]),
    ("name = bob/digits/1", ["c"]),
    ("status:queued", ["a", "b", "c", "d", "e"]),
    ("status:running", []),
    ("nosuchparam > 0", []),
    ('name = "x\' OR 1=1 --"', []),             # a value is a value
    ("memo ~ \"'; DROP TABLE sessions; --\"", ["d"]),
    ("memo ~ \"%\"", []),                        # LIKE's wildcards are literal characters
    ("memo ~ _", []),
])
def test_a_query_selects_what_it_says(store, lab, text, want):
    assert select(store, lab, text) == want


def test_the_query_combines_with_the_viewers_scope_and_paging(store, lab):
    from nsml.core.policy import SessionScope

    bobs = SessionScope(everything=False, owner="bob")
    total, rows = store.runs_table(where_tree=query.parse("lr < 1"), scope=bobs)
    assert total == 1 and [r.id for r in rows] == [lab["c"].id]  # alice's sessions stay hers
    total, rows = store.runs_table(where_tree=query.parse("kind:train"), limit=2, offset=1)
    assert total == 4 and len(rows) == 2
    assert store.session_by_id(lab["d"].id).memo.startswith("x'")  # and the table is still there


def test_tags_are_added_removed_bounded_and_shown_in_the_table(store, lab):
    a = lab["a"]
    assert store.tag_session(a.id, add=["x"], remove=["v2", "absent"]) == ["baseline", "x"]
    assert store.session_tags([a.id, lab["e"].id]) == {a.id: ["baseline", "x"], lab["e"].id: []}
    _, rows = store.runs_table(where_tree=query.parse("tag:x"))
    assert [(r.id, r.tags) for r in rows] == [(a.id, ["baseline", "x"])]
    with pytest.raises(InvalidInput, match="is not a tag"):
        store.tag_session(a.id, add=["two words"])
    with pytest.raises(InvalidInput, match="is not a tag"):
        store.tag_session(a.id, add=["tag:x"])
    with pytest.raises(InvalidInput, match=f"at most {MAX_TAGS} tags"):
        store.tag_session(a.id, add=[f"t{i}" for i in range(MAX_TAGS)])
    assert store.session_tags([a.id])[a.id] == ["baseline", "x"]  # nothing changed
    with pytest.raises(NotFound):
        store.tag_session(10**6, add=["x"])
    store.delete_session(a.id)
    assert store.session_tags([a.id]) == {a.id: []}


def test_notes_replace_and_are_bounded(store, lab):
    a = lab["a"]
    assert store.session_note(a.id) == ""
    store.set_note(a.id, "# Findings\n\n*wider* helps")
    assert store.session_note(a.id) == "# Findings\n\n*wider* helps"
    with pytest.raises(InvalidInput, match="at most"):
        store.set_note(a.id, "x" * ((64 << 10) + 1))
    with pytest.raises(NotFound):
        store.set_note(10**6, "x")
    with pytest.raises(NotFound):
        store.session_note(10**6)


@pytest.mark.parametrize("words, want", [
    (["+a", "-b", "c"], (["a", "c"], ["b"])), ([], ([], [])), (["+x.y-z_1"], (["x.y-z_1"], [])),
])
def test_tag_changes_from_the_command_line(words, want):
    assert parse_changes(words) == want


def test_a_bad_tag_change_is_refused():
    with pytest.raises(InvalidInput):
        parse_changes(["+"])


@pytest.mark.parametrize("sort", ["metric:loss:min", "param:lr", "created"])
def test_a_query_on_the_table_sorted_by_the_same_tables(store, lab, sort):
    # Sorting by a metric joins series, by a parameter session_params: a condition on either
    # must still read its own rows (an alias), not the sort's.
    from nsml.core.params import parse_sort

    total, rows = store.runs_table(where_tree=query.parse("loss < 1 or tag:v2 or lr > 0.05"), sort=parse_sort(sort))
    assert total == 2 and {r.id for r in rows} == {lab["a"].id, lab["b"].id}


def test_configuration_lines_merge_into_the_parameters_once(store):
    import json

    s = new_session(store, "--lr 0.1 --hidden 64")
    lines = [{"k": "p", "w": 1.0, "v": {"lr": 0.1, "hidden": 64, "layers": [64, 64], "out": "runs", "amp": False}},
             {"k": "m", "w": 2.0, "step": 1, "s": False, "v": {"loss": 0.5}},
             {"k": "p", "w": 3.0, "v": {"seed": 7, "lr": 0.05, "k" * 500: 1, "big": "x" * 5000}},
             {"k": "p", "w": 3.0, "v": "not a dict"}]
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    notes = []
    assert store.ingest_journal(s.id, 0, data, notes) == len(data)
    want = {"lr": 0.05, "hidden": 64, "layers": "[64, 64]", "out": "runs", "amp": False, "seed": 7}
    assert store.session_params([s.id])[s.id] == want
    assert sorted(about for about, _ in notes) == ["config", "config-key", "config:big"]
    assert store.ingest_journal(s.id, 0, data) == len(data)  # a resend changes nothing
    assert store.session_params([s.id])[s.id] == want
    assert [p.value for p in store.metric_points(s.id, "loss")] == [0.5]
    assert select(store, {"s": s}, "hidden = 64 and amp = false and out = runs") == ["s"]  # defaults are queryable


def test_configuration_past_the_parameter_limit_keeps_what_fits(store):
    import json

    from nsml.core.params import MAX_PARAMS

    s = new_session(store, "--lr 0.1")
    line = {"k": "p", "w": 1.0, "v": {f"k{i}": i for i in range(MAX_PARAMS + 10)}}
    notes = []
    store.ingest_journal(s.id, 0, (json.dumps(line) + "\n").encode(), notes)
    got = store.session_params([s.id])[s.id]
    assert len(got) == MAX_PARAMS and got["lr"] == 0.1 and [a for a, _ in notes] == ["config-many"]
