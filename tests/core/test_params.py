"""A session's parameters from its arguments, how they are stored (num, text), and the runs
table's column names: pure functions of nsml.core.params."""

import pytest

from nsml.core import params as p
from nsml.core.errors import InvalidInput
from nsml.core.params import Column


@pytest.mark.parametrize("args, want", [
    ("--lr 0.01 --batch 32", {"lr": 0.01, "batch": 32}),
    ("--lr=1e-3 --name=a=b", {"lr": 0.001, "name": "a=b"}),
    ("--flag --lr 0.1 --last", {"flag": True, "lr": 0.1, "last": True}),
    ("--shift -1 --eps -.5 --x +2", {"shift": -1, "eps": -0.5, "x": 2}),
    ("-l 0.5 -v", {"l": 0.5, "v": True}),
    ("train.py data --lr 0.1 extra words", {"lr": 0.1}),
    ("--batch-size 64", {"batch_size": 64}),  # argparse's dest
    ("--note 'two words' --empty ''", {"note": "two words", "empty": ""}),
    ("--lr 0.1 --lr 0.2", {"lr": 0.2}),
    ("--opt adam --mode nan --n inf", {"opt": "adam", "mode": "nan", "n": "inf"}),  # words, never non-finite numbers
    ("", {}),
    ("--bad 'unclosed", {"bad": "'unclosed"}),  # not shell-splittable: split on spaces
])
def test_options_of_an_argument_string(args, want):
    got = p.parse_args(args)
    assert got == want
    assert all(type(got[k]) is type(want[k]) for k in want)


@pytest.mark.parametrize("value, stored", [
    (0.01, (0.01, "0.01")), (32, (32.0, "32")), (True, (1.0, "true")), (False, (0.0, "false")),
    ("adam", (None, "adam")), ("1e-3", (0.001, "1e-3")), (None, (None, None)),
    ([1, 2], (None, "[1, 2]")), (float("nan"), (None, "nan")), ("true", (None, "true")),
])
def test_values_are_stored_as_written_with_their_number(value, stored):
    assert p.encode(value) == stored
    back = p.decode(*stored)
    if isinstance(value, (bool, int, float, str)) and value == value and value != "1e-3":  # that one: next test
        assert back == value and type(back) is type(value)


def test_text_that_writes_a_number_reads_as_that_number():
    assert p.decode(*p.encode("0.5")) == 0.5
    assert p.decode(*p.encode("7")) == 7
    assert p.decode(*p.encode("1e-3")) == 0.001  # what argparse without type= gives reads as its number


def test_bounds_say_which_parameter():
    with pytest.raises(InvalidInput, match="at most 256 parameters"):
        p.check_params({f"k{i}": i for i in range(p.MAX_PARAMS + 1)})
    with pytest.raises(InvalidInput, match="'lr'.*characters long"):
        p.check_params({"lr": "x" * (p.MAX_TEXT + 1)})
    for key in ("", "k" * (p.MAX_KEY + 1), "a\nb", 3):
        with pytest.raises(InvalidInput, match="Parameter names"):
            p.check_params({key: 1})
    with pytest.raises(InvalidInput):
        p.check_params(["lr"])
    assert p.check_params({"lr": 0.1, "opt": "adam"}) == {"lr": (0.1, "0.1"), "opt": (None, "adam")}


def test_what_a_session_is_created_with_is_cut_to_fit_not_refused():
    many = p.parse_args(" ".join(f"--k{i} {i}" for i in range(p.MAX_PARAMS + 10)))
    assert len(p.storable(many)) == p.MAX_PARAMS
    odd = p.storable({"ok": 1, "long": "x" * (p.MAX_TEXT + 1), "k" * (p.MAX_KEY + 1): 2})
    assert odd == {"ok": (1.0, "1")}


def test_column_names():
    assert p.metric_column("val/loss") == Column("metric", "val/loss", "last")
    assert p.metric_column("val/loss:min") == Column("metric", "val/loss", "min")
    assert p.metric_column("a:b:max") == Column("metric", "a:b", "max")
    assert p.parse_sort("created") == Column("session", "created")
    assert p.parse_sort("param:lr") == Column("param", "lr")
    assert p.parse_sort("metric:acc") == Column("metric", "acc", "last")
    assert p.parse_sort("metric:a:b:min") == Column("metric", "a:b", "min")
    for c in (Column("session", "id"), Column("param", "lr"), Column("metric", "x:y", "max")):
        assert p.parse_sort(c.spec) == c


@pytest.mark.parametrize("bad", ["loss:mean", "loss:", ":min"])
def test_a_bad_metric_column_says_what_is_allowed(bad):
    with pytest.raises(InvalidInput, match="last, min, max|1 to 256"):
        p.metric_column(bad)


@pytest.mark.parametrize("bad", ["bogus", "param:", "metric:loss:avg", "series:loss", "param:" + "k" * 300])
def test_a_bad_sort_says_what_is_allowed(bad):
    with pytest.raises(InvalidInput):
        p.parse_sort(bad)


def test_columns_check_themselves():
    with pytest.raises(InvalidInput):
        Column("param", "lr", "min")
    with pytest.raises(InvalidInput):
        Column("session", "memo")
    with pytest.raises(InvalidInput):
        Column("table", "x")
    assert p.check_order("desc") is True and p.check_order("asc") is False
    with pytest.raises(InvalidInput, match="asc or desc"):
        p.check_order("up")
