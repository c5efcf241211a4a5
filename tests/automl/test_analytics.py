"""The study pages' computations (nsml.server.automl.analytics) on plain trials: the axes'
order by correlation, Optuna's importance evaluators, history/EDF, lineage, contour, and the
"re-run with this space" config narrowed from a brush (categorical included), refusing a brush
that leaves nothing."""

import math
import subprocess
import sys

import pytest

from nsml.core.automl_config import parse_config
from nsml.core.errors import InvalidInput
from nsml.server.automl import analytics
from nsml.server.automl.analytics import TrialRow

pytest.importorskip("optuna")

RAW = {"h_params": {
    "lr": {"parameters": [0.0001, 1.0], "distribution": "log_uniform", "type": "float"},
    "width": {"parameters": [4, 64], "distribution": "uniform", "type": "int"},
    "act": {"parameters": ["relu", "tanh", "gelu"], "distribution": "categorical", "type": "str"},
    "noise": {"parameters": [0.0, 1.0], "distribution": "uniform", "type": "float"}},
    "measure": "val/score", "order": "descending", "termination": {"max_session_number": 20}}


def trials(n=12) -> list[TrialRow]:
    """The score rises strongly with width, a little with act == tanh, not at all with lr's
    or noise's pattern (a fixed scramble)."""
    out = []
    for i in range(n):
        width = 4 + (i * 5) % 61
        lr = 10 ** (-4 + (i * 7 % 11) / 2.75)
        act = ["relu", "tanh", "gelu"][i % 3]
        noise = ((i * 37) % 13) / 13
        score = width / 64 + (0.03 if act == "tanh" else 0) + 0.001 * math.sin(i * 3.1)
        out.append(TrialRow(i, {"lr": lr, "width": width, "act": act, "noise": noise}, "complete", score,
                            {1: score - 0.1, 2: score}, created=100.0 + i, started=101.0 + i, ended=110.0 + i, session=f"u/d/{i + 2}"))
    return out


def test_axes_are_ordered_by_the_strength_of_their_correlation_with_the_measure():
    config = parse_config(RAW)
    got = analytics.order(config, trials())
    assert got[0]["name"] == "width" and got[0]["r"] > 0.99
    assert [abs(o["r"]) for o in got] == sorted((abs(o["r"]) for o in got), reverse=True)
    axes = analytics.axes(config, trials())
    lr = next(a for a in axes if a["key"] == "lr")
    assert lr["log"] and lr["label"] == "lr (log10)" and -4 <= min(lr["values"]) and max(lr["values"]) <= 0
    act = next(a for a in axes if a["key"] == "act")
    assert act["cats"] == ["relu", "tanh", "gelu"] and set(act["values"]) == {0.0, 1.0, 2.0}


def test_too_few_trials_leave_the_config_order_and_no_r():
    config = parse_config(RAW)
    assert [o["name"] for o in analytics.order(config, trials(2))] == ["lr", "width", "act", "noise"]
    assert analytics.pearson([1, 2], [3, 4]) is None and analytics.pearson([1, 1, 1], [1, 2, 3]) is None
    assert analytics.pearson([1, 2, 3], [6, 4, 2]) == pytest.approx(-1)


@pytest.mark.parametrize("method", ["fanova", "ped_anova"])
def test_importance_by_optunas_evaluators_covers_every_parameter_and_sums_to_one(method):
    got = analytics.importance(parse_config(RAW), trials(16), method)
    names = [r["name"] for r in got["importances"]]
    assert sorted(names) == ["act", "lr", "noise", "width"] and got["trials"] == 16
    assert sum(r["importance"] for r in got["importances"]) == pytest.approx(1, abs=1e-6)
    if method == "fanova":
        assert names[0] == "width"  # by far the strongest


def test_importance_with_fewer_than_two_complete_trials_says_why_and_a_bad_method_is_refused():
    got = analytics.importance(parse_config(RAW), trials(1), "fanova")
    assert got["importances"] == [] and "at least 2 complete trials" in got["note"]
    with pytest.raises(InvalidInput, match="fanova, ped_anova"):
        analytics.importance(parse_config(RAW), trials(), "shap")


def test_history_edf_timeline_and_intermediate_values():
    rows = trials(4)
    rows[1] = TrialRow(1, rows[1].params, "pruned", None, {1: 0.1})
    h = analytics.history(rows, "maximize")
    assert [x["best"] for x in h] == [rows[0].value, rows[0].value, max(rows[0].value, rows[2].value),
                                       max(rows[0].value, rows[2].value, rows[3].value)]
    assert h[1]["value"] is None
    assert [round(e["fraction"], 3) for e in analytics.edf(rows)] == [0.333, 0.667, 1.0]
    tl = analytics.timeline(rows, now=500.0)
    assert [t["number"] for t in tl] == [0, 2, 3]  # trial 1 never started a session
    assert [i["number"] for i in analytics.intermediate(rows)] == [0, 1, 2, 3] and analytics.intermediate(rows)[1]["values"] == [0.1]
    assert analytics.history(rows, "minimize")[-1]["best"] == min(rows[0].value, rows[2].value, rows[3].value)


def test_lineage_follows_parent_links_and_works_without_any():
    flat = analytics.lineage(trials(3), now=1.0)
    assert not flat["forked"] and flat["edges"] == [] and {n["depth"] for n in flat["nodes"]} == {0}
    rows = [TrialRow(0, {}, "complete", 1.0, created=1), TrialRow(1, {}, "complete", 2.0, created=2),
            TrialRow(2, {}, "running", None, parent=0, created=3), TrialRow(3, {}, "running", None, parent=2, created=4),
            TrialRow(4, {}, "running", None, parent=4, created=5)]  # a self link in bad data: a root
    tree = analytics.lineage(rows, now=9.0)
    by = {n["number"]: n for n in tree["nodes"]}
    assert tree["forked"] and [(e["from"], e["to"]) for e in tree["edges"]] == [(0, 2), (2, 3)]
    assert (by[0]["depth"], by[2]["depth"], by[3]["depth"], by[4]["depth"]) == (0, 1, 2, 0)
    assert [by[n]["lane"] for n in (0, 2, 3, 1)] == [0, 1, 2, 3]  # a subtree's lanes together
    assert tree["frames"] == [1, 2, 3, 4, 5]


def test_contour_interpolates_between_the_trials_and_refuses_unknown_parameters():
    got = analytics.contour(parse_config(RAW), trials(), "width", "lr")
    assert len(got["points"]) == 12 and got["x"]["name"] == "width" and got["y"]["log"]
    z = got["grid"]["z"]
    assert len(z) == analytics.CONTOUR_GRID and len(z[0]) == analytics.CONTOUR_GRID
    assert z[0][-1] > z[0][0]  # wider is better, and the surface says so
    assert analytics.contour(parse_config(RAW), trials(2), "width", "lr")["grid"] is None
    with pytest.raises(InvalidInput, match="no parameter 'depth'"):
        analytics.contour(parse_config(RAW), trials(), "depth", "lr")
    with pytest.raises(InvalidInput, match="two different"):
        analytics.contour(parse_config(RAW), trials(), "lr", "lr")


def test_rerun_config_narrows_numeric_ranges_and_categorical_choices():
    new = analytics.rerun_config(RAW, {"lr": [0.001, 0.05], "width": [20.4, 100], "act": ["tanh", "gelu"]}, memo="narrowed")
    hp = new["h_params"]
    assert hp["lr"] == {"parameters": [0.001, 0.05], "distribution": "log_uniform", "type": "float"}
    assert hp["width"]["parameters"] == [21, 64]  # whole numbers inside the brush, clipped to the range
    assert hp["act"]["parameters"] == ["tanh", "gelu"] and hp["noise"] == RAW["h_params"]["noise"]
    assert new["memo"] == "narrowed" and new["measure"] == RAW["measure"] and RAW["h_params"]["lr"]["parameters"] == [0.0001, 1.0]
    parse_config(new)
    one = analytics.rerun_config(RAW, {"width": [29.6, 30.4]})  # one whole number: that one choice
    assert one["h_params"]["width"] == {"parameters": [30], "distribution": "categorical", "type": "int"}
    bools = {**RAW, "h_params": {"bn": {"parameters": [True, False], "distribution": "categorical", "type": "bool"}}}
    assert analytics.rerun_config(bools, {"bn": ["true"]})["h_params"]["bn"]["parameters"] == [True]


@pytest.mark.parametrize("ranges, message", [
    ({}, "Brush at least one"),
    ({"lr": []}, "is empty"),
    ({"depth": [1, 2]}, "no parameter 'depth'"),
    ({"act": ["swish"]}, "None of ['swish']"),
    ({"width": [30.2, 30.9]}, "no whole number"),
    ({"lr": [2.0, 3.0]}, "holds no value of its range"),
    ({"noise": [0.5, 0.5]}, "a single value"),
    ({"noise": ["a", "b"]}, "two numbers"),
])
def test_rerun_config_refuses_a_brush_that_leaves_no_space(ranges, message):
    with pytest.raises(InvalidInput, match=message.replace("[", r"\[").replace("]", r"\]")):
        analytics.rerun_config(RAW, ranges)


def test_merged_config_spans_both_studies_and_refuses_different_measures():
    other = {**RAW, "h_params": {"lr": {"parameters": [0.01, 10.0], "distribution": "log_uniform", "type": "float"},
                                 "act": {"parameters": ["relu", "swish"], "distribution": "categorical", "type": "str"}}}
    merged = analytics.merged_config([("a", RAW), ("b", other)])
    assert list(merged["h_params"]) == ["lr", "act"]
    assert merged["h_params"]["lr"]["parameters"] == [0.0001, 10.0]
    assert merged["h_params"]["act"]["parameters"] == ["relu", "tanh", "gelu", "swish"]
    with pytest.raises(InvalidInput, match="cannot be merged"):
        analytics.merged_config([("a", RAW), ("b", {**other, "measure": "loss"})])


def test_the_server_and_the_analytics_load_no_optuna_until_importance_is_asked():
    code = ("import sys, nsml.server.app, nsml.server.api.automl_web, nsml.server.automl.analytics as a; "
            "assert 'optuna' not in sys.modules, 'optuna loaded at import'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
