"""The runs query language (nsml/core/query.py): what parses to what, every error kind with its
position, and that no input makes the parser fail any other way."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nsml.core import query as q
from nsml.core.query import And, Compare, Field, Key, Metric, Not, Or, Param, Text


@pytest.mark.parametrize("text, tree", [
    ("", None),
    ("   ", None),
    ("lr < 0.01 and val/accuracy >= 0.95",
     And((Compare(Key("lr"), "<", 0.01), Compare(Key("val/accuracy"), ">=", 0.95)))),
    ("status:running dataset:digits",  # side by side: and
     And((Compare(Field("status"), "=", "running"), Compare(Field("dataset"), "=", "digits")))),
    ("kind:submit or tag:baseline", Or((Compare(Field("kind"), "=", "submit"), Compare(Field("tag"), "=", "baseline")))),
    ("a=1 or b=2 and c=3",  # and binds tighter than or
     Or((Compare(Key("a"), "=", 1), And((Compare(Key("b"), "=", 2), Compare(Key("c"), "=", 3)))))),
    ("(a=1 or b=2) c=3", And((Or((Compare(Key("a"), "=", 1), Compare(Key("b"), "=", 2))), Compare(Key("c"), "=", 3)))),
    ("not user:alice", Not(Compare(Field("user"), "=", "alice"))),
    ("NOT Status:Running", Not(Compare(Field("status"), "=", "running"))),
    ('memo~"wide net"', Compare(Field("memo"), "~", "wide net")),
    ("memo:wide", Compare(Field("memo"), "~", "wide")),  # a memo is matched, not equalled
    ("user:alice/x", Compare(Field("user"), "=", "alice/x")),
    ("name != alice/digits/3", Compare(Field("name"), "!=", "alice/digits/3")),
    ("max(val/acc) > 0.9", Compare(Metric("val/acc", "max"), ">", 0.9)),
    ("min(`loss@std`) <= 1", Compare(Metric("loss@std", "min"), "<=", 1)),
    ("last(loss) < 2", Compare(Metric("loss", "last"), "<", 2)),
    ("params.lr = 0.01", Compare(Param("lr"), "=", 0.01)),
    ("metrics.val/acc > .5", Compare(Metric("val/acc"), ">", 0.5)),
    ("`acc@vector:top1` > 0.5", Compare(Key("acc@vector:top1"), ">", 0.5)),
    ("lr=0.01", Compare(Key("lr"), "=", 0.01)),  # the dashboard's chip format
    ("lr == 1e-3", Compare(Key("lr"), "=", 0.001)),
    ("lr<-1e-3", Compare(Key("lr"), "<", -0.001)),
    ("batch = 32", Compare(Key("batch"), "=", 32)),
    ("optimizer = adam", Compare(Key("optimizer"), "=", "adam")),
    ("optimizer != 'sgd'", Compare(Key("optimizer"), "!=", "sgd")),
    ("note !~ draft", Compare(Key("note"), "!~", "draft")),
    ("resnet", Text("resnet")),
    ('"two words" 50', And((Text("two words"), Text("50")))),
    (r'memo ~ "say \"hi\""', Compare(Field("memo"), "~", 'say "hi"')),
])
def test_queries_parse_to_their_trees(text, tree):
    assert q.parse(text) == tree
    if isinstance(tree, Compare):  # numbers stay numbers, ints ints
        assert type(q.parse(text).value) is type(tree.value)


@pytest.mark.parametrize("text, message, at", [
    ("lr <", "a value is missing after '<'", 4),
    ("lr < and x", "a value is missing after '<' ('and' is a keyword; quote it)", 5),
    ("foo:bar", "'foo:' is not a field", 0),
    ("status:runing", "'runing' is not a status", 7),
    ("kind:zzz", "'zzz' is not a kind", 5),
    ("status > 3", "status is not a number", 9),
    ("lr < abc", "'<' compares numbers: 'abc' is not one", 5),
    ("x ~ 3", "'~' matches text", 4),
    ("(a=1", "a ')' is missing here", 4),
    ("a=1)", "this ')' has no '(' before it", 3),
    ("()", "nothing between '(' and ')'", 1),
    ('"lr" = 1', "a quoted string is a value; quote a name with backticks", 0),
    ("3 > lr", "a comparison starts with a name, not a number", 0),
    ("a = 1 #", "unexpected character '#'", 6),
    ("a = 1 ;DROP", "unexpected character ';'", 6),
    ("min(", "min( takes a metric name", 4),
    ("min(loss > 1", "a ')' is missing after min(loss", 9),
    ("`x", "this name is not closed", 0),
    ('memo ~ "x', "this string is not closed", 7),
    ("``", "an empty name", 0),
    ("and", "'and' here needs a name before it", 0),
    ("lr", None, None),  # a bare word is text search, not an error
    ("a = 1 or", "the query ends where a term was expected", 8),
    ("= 3", "'=' here needs a name before it", 0),
    ("1e999 > 2", "1e999 is not a finite number", 0),
    ("params. = 1", "a name is missing after params.", 0),
    ("lr 0.1 >", "a comparison starts with a name, not a number", 3),
])
def test_each_error_names_the_token_at_fault(text, message, at):
    if message is None:
        assert q.parse(text) == Text(text)
        return
    with pytest.raises(q.QueryError) as caught:
        q.parse(text)
    err = caught.value
    assert err.reason.startswith(message), err.reason
    assert err.position == at
    assert str(err).splitlines()[-1] == "  " + " " * at + "^"  # the caret under the token


def test_bounds_are_errors_not_work():
    with pytest.raises(q.QueryError, match="at most 2000 characters"):
        q.parse("a=1 " * 600)
    with pytest.raises(q.QueryError, match="at most 64 terms"):
        q.parse(" ".join(f"k{i}=1" for i in range(65)))
    with pytest.raises(q.QueryError, match="nested more than 32 deep"):
        q.parse("(" * 40 + "a=1" + ")" * 40)
    with pytest.raises(q.QueryError, match="nested more than 32 deep"):
        q.parse("not " * 40 + "a=1")


def test_injection_attempts_are_values_or_errors_never_syntax():
    # Whatever a value holds, it is one value in the tree: the store binds it as a parameter.
    tree = q.parse("name = \"x' OR 1=1; DROP TABLE sessions; --\"")
    assert tree == Compare(Field("name"), "=", "x' OR 1=1; DROP TABLE sessions; --")
    assert q.parse("`lr); DELETE FROM users; --` = 1") == Compare(Key("lr); DELETE FROM users; --"), "=", 1)
    for text in ["lr = 1; DROP TABLE x", "lr = 1 -- comment", "lr = 1 /* x */"]:
        with pytest.raises(q.QueryError):
            q.parse(text)
    assert q.parse("__import__('os')") == And((Text("__import__"), Text("os")))  # words to search for, no more


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(list("ab lr01.<>=!~:()`\"'\\-e/@") + ["and ", " or ", "not ", "status:", "max("]),
                max_size=30).map("".join)
       | st.text(max_size=80))
def test_any_text_parses_or_is_a_query_error(text):
    try:
        q.parse(text)
    except q.QueryError as err:
        assert 0 <= err.position <= len(text)
