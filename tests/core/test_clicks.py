"""Usability analytics' rules (nsml/core/clicks.py): what an event may say, and the summary."""

import pytest

from nsml.core import clicks
from nsml.core.errors import InvalidInput


def test_events_are_kinds_of_page_and_named_actions_only():
    assert clicks.check_events([{"page": "home", "action": "view"}, {"page": "session", "action": "leave", "ms": 1500},
                                {"page": "compare", "action": "click:export-csv", "ms": 3}]) == [
        ("home", "view", None), ("session", "leave", 1500), ("compare", "click:export-csv", None)]


@pytest.mark.parametrize("event, words", [
    ({"page": "/sessions/alice/secret/1", "action": "view"}, "the page is one of"),  # a URL would leak names
    ({"page": "home", "action": "click:Alice's dataset"}, "the action is"),
    ({"page": "home", "action": "typed:secret"}, "the action is"),
    ({"page": "home", "action": "leave", "ms": -1}, "ms is a whole number"),
    ({"page": "home", "action": "leave", "ms": 1.5}, "ms is a whole number"),
])
def test_anything_else_is_refused(event, words):
    with pytest.raises(InvalidInput, match=words):
        clicks.check_events([event])
    with pytest.raises(InvalidInput, match="At most 100"):
        clicks.check_events([{"page": "home", "action": "view"}] * 101)


def test_the_summary_counts_views_time_moves_and_going_back_and_forth():
    events = [(0.0, "a", "home", "view", None), (5.0, "a", "home", "leave", 5000), (5.0, "a", "session", "view", None),
              (9.0, "a", "home", "view", None),  # back to home within a minute: back and forth via session
              (9.5, "a", "home", "click:sort-loss", None), (200.0, "a", "compare", "view", None),
              (300.0, "a", "home", "view", None),  # back after 100 s: a move, not back and forth
              (1.0, "b", "session", "view", None), (2.0, "b", "session", "leave", 1000)]
    s = clicks.summarise(sorted(events))
    assert s["users"] == 2
    assert s["pages"] == [{"page": "home", "views": 3, "mean_seconds": 5.0}, {"page": "session", "views": 2, "mean_seconds": 1.0},
                          {"page": "compare", "views": 1, "mean_seconds": None}]
    assert s["back_and_forth"] == [{"page": "home", "via": "session", "count": 1}]
    assert {(m["from"], m["to"]): m["count"] for m in s["moves"]} == {
        ("home", "session"): 1, ("session", "home"): 1, ("home", "compare"): 1, ("compare", "home"): 1}
    assert s["controls"] == [{"page": "home", "control": "sort-loss", "clicks": 1}]
    assert clicks.summarise([]) == {"users": 0, "pages": [], "controls": [], "moves": [], "back_and_forth": []}
