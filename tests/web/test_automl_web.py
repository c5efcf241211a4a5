"""AutoML's visual analytics against a real server with real studies whose trials are real
sessions (the quick study of tests/automl/test_automl_server.py): the JSON twins of the study
page (trials with their sessions' times, history, EDF, intermediate values, timeline, axes by
correlation, slices, lineage), importance by Optuna's evaluators, contour, the narrowed config,
the comparison of two studies, and the policy (another user reads nothing of a private study
and cannot re-run it); then Chromium: the study page's parallel coordinates brushed with the
real mouse and "Re-run with this space" starting a study over the narrowed range."""

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import pytest

from tests.automl.test_automl_server import TRAIN, config
from tests.cli.test_datasets import add_user
from tests.conftest import Cli, cli_in, wait_for, write_project

pytest.importorskip("optuna")
pytestmark = pytest.mark.timeout(420)
SHOTS = Path(os.environ.get("NSML_AUTOML_SHOTS", "/tmp/shots-automl"))
WEB = "/api/web/automl"


@pytest.fixture(scope="module")
def acli(srv, tmp_path_factory) -> Cli:
    cli = cli_in(srv, tmp_path_factory.mktemp("automl-web") / "code")
    write_project(cli.cwd, TRAIN)
    return cli


def run_study(srv, cli: Cli, name: str, data: dict, *args) -> str:
    (cli.cwd / name).write_text(json.dumps(data))
    study = json.loads(cli("automl", "run", "-c", name, "-j", *args).stdout)["name"]
    assert srv.wait(study, statuses=("exited", "failed", "stopped"), timeout=240)["status"] == "exited"
    trials = srv.api.get(f"/api/automl/{study}").json()["trials"]
    failed = {t["session"]: srv.session(t["session"])["error"] for t in trials if t["state"] != "complete"}
    assert not failed, f"trials of {study} did not complete (the tests below need 4 complete ones): {failed}"
    return study


@pytest.fixture(scope="module")
def studies(srv, acli):
    """Two finished private studies of 4 trials (population 2, 4 epochs): tpe and random."""
    tpe = run_study(srv, acli, "tpe.json", config(), "--visibility", "private", "--seed", "3", "-m", "tpe search")
    rnd = run_study(srv, acli, "random.json", config(algorithm="random"), "--visibility", "private", "--seed", "5")
    return tpe, rnd


def path(name: str) -> str:
    return f"{WEB}/{name}"


def test_the_study_view_twin_holds_every_views_data(srv, studies):
    d = srv.api.get(path(studies[0])).json()
    s, trials = d["study"], d["trials"]
    assert s["name"] == studies[0] and s["algorithm"] == "tpe" and s["controllable"] and s["config"]["measure"] == "val__score"
    assert [t["number"] for t in trials] == [0, 1, 2, 3] and all(t["session"] and t["started"] < t["ended"] for t in trials)
    assert all("val/score" in t["last_values"] for t in trials)
    values = [t["value"] for t in trials]
    assert [h["best"] for h in d["history"]] == pytest.approx([max(values[: i + 1]) for i in range(4)])
    assert [e["value"] for e in d["edf"]] == pytest.approx(sorted(values)) and d["edf"][-1]["fraction"] == 1
    assert [i["steps"] for i in d["intermediate"]] == [[1, 2]] * 4  # compared every 2 epochs of 4
    assert [t["number"] for t in d["timeline"]] == [0, 1, 2, 3] and not any(t["running"] for t in d["timeline"])
    axes = d["axes"]
    assert {a["key"] for a in axes} == {"lr", "width", "act"}
    rs = [abs(a["r"]) if a["r"] is not None else -1 for a in axes]
    assert rs == sorted(rs, reverse=True)  # the strongest correlation with the measure first
    lr = next(a for a in axes if a["key"] == "lr")
    assert lr["log"] and all(-4 <= v <= 0 for v in lr["values"])
    act = next(a for a in axes if a["key"] == "act")
    assert act["cats"] == ["relu", "tanh"] and act["choices"] == ["relu", "tanh"]
    assert {sl["name"] for sl in d["slices"]} == {"lr", "width", "act"} and all(len(sl["x"]) == 4 for sl in d["slices"])
    lineage = d["lineage"]
    assert not lineage["forked"] and len(lineage["nodes"]) == 4 and lineage["edges"] == [] and len(lineage["frames"]) >= 2


@pytest.mark.parametrize("method", ["fanova", "ped_anova"])
def test_importance_by_optunas_evaluators(srv, studies, method):
    got = srv.api.get(f"{path(studies[0])}/importance", params={"method": method}).json()
    assert got["method"] == method and got["trials"] == 4
    assert sorted(r["name"] for r in got["importances"]) == ["act", "lr", "width"]
    assert sum(r["importance"] for r in got["importances"]) == pytest.approx(1, abs=1e-6)


def test_contour_and_bad_queries_say_what_is_wrong(srv, studies):
    c = srv.api.get(f"{path(studies[0])}/contour", params={"x": "width", "y": "lr"}).json()
    assert c["x"]["name"] == "width" and c["y"]["log"] and len(c["points"]) == 4 and len(c["grid"]["z"]) == 24
    default = srv.api.get(f"{path(studies[0])}/contour").json()
    assert default["x"]["name"] != default["y"]["name"]
    bad = srv.api.get(f"{path(studies[0])}/contour", params={"x": "depth"})
    assert bad.status_code == 400 and "no parameter 'depth'" in bad.json()["detail"]
    bad = srv.api.get(f"{path(studies[0])}/importance", params={"method": "shap"})
    assert bad.status_code == 400 and "fanova, ped_anova" in bad.json()["detail"]


def test_the_narrowed_config_is_previewed_and_an_empty_brush_refused(srv, studies):
    got = srv.api.post(f"{path(studies[0])}/rerun/config", json={"ranges": {"lr": [0.001, 0.1], "act": ["tanh"], "width": [10.5, 30]}}).json()
    hp = got["config"]["h_params"]
    assert hp["lr"]["parameters"] == [0.001, 0.1] and hp["act"]["parameters"] == ["tanh"] and hp["width"]["parameters"] == [11, 30]
    assert got["config"]["termination"] == {"max_session_number": 4}  # the rest as the study had it
    for body, message in (({"ranges": {}}, "Brush at least one"), ({"ranges": {"lr": [5, 6]}}, "holds no value")):
        resp = srv.api.post(f"{path(studies[0])}/rerun", json=body)
        assert resp.status_code == 400 and message in resp.json()["detail"], resp.text
    assert srv.api.post(f"{path(studies[0])}/rerun", json={"ranges": {"lr": [0.01, 0.1]}, "extra": 1}).status_code == 422


def test_two_studies_compared_and_their_trials_merged_for_importance(srv, studies):
    d = srv.api.get(f"{WEB}/compare", params={"s": list(studies)}).json()
    assert [x["study"]["name"] for x in d["studies"]] == list(studies) and d["mergeable"]
    assert d["params"] == ["lr", "width", "act"] and all(len(x["trials"]) == 4 and len(x["history"]) == 4 for x in d["studies"])
    merged = srv.api.get(f"{WEB}/compare/importance", params={"s": list(studies)}).json()
    assert merged["trials"] == 8 and sorted(r["name"] for r in merged["importances"]) == ["act", "lr", "width"]
    none = srv.api.get(f"{WEB}/compare")
    assert none.status_code == 400 and "Name the studies" in none.json()["detail"]
    plain = srv.api.get(f"{WEB}/compare", params={"s": studies[0].rsplit("/", 1)[0] + "/2"})  # a trial, not a study
    assert plain.status_code == 404 and "not an AutoML session" in plain.json()["detail"]


def test_another_user_reads_nothing_of_a_private_study_and_cannot_rerun_it(srv, studies):
    bob = add_user(srv, "bob-automl", "bob-automl-token")
    for url in (path(studies[0]), f"{path(studies[0])}/importance", f"{path(studies[0])}/contour"):
        assert bob.get(url).status_code == 404, url
    assert bob.get(f"{WEB}/compare", params={"s": list(studies)}).status_code == 404
    assert bob.get(f"{WEB}/compare/importance", params={"s": studies[0]}).status_code == 404
    for tail in ("/rerun", "/rerun/config"):
        assert bob.post(path(studies[0]) + tail, json={"ranges": {"lr": [0.01, 0.1]}}).status_code == 404
    assert not any(s["owner"] == "bob-automl" for s in srv.api.get("/api/automl", params={"all": "true"}).json())


def tick_y(page, key, text) -> float:
    box = page.locator(f".pc-axis[data-key='{key}'] .pc-tick text", has_text=text).first.bounding_box()
    return box["y"] + box["height"] / 2


def test_brushing_the_study_page_and_rerunning_the_narrowed_space(srv, page, studies, tmp_path):
    """The HyperTendril loop in Chromium: brush the width axis of the parallel coordinates with
    the mouse, click "Re-run with this space", and a new study starts whose width range is the
    brush's; the page's other views draw from their twins."""
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    owner, dataset, n = studies[1].split("/")
    evil = '<img src=x onerror="window.pwned=1">'
    assert srv.api.patch(f"/api/sessions/{owner}/{dataset}/{n}/memo", json={"memo": evil}).status_code == 200
    page.goto(f"{srv.url}/automl")
    page.locator(f"tr[data-study='{studies[1]}'] td.memo-cell", has_text=evil).wait_for()  # as text, never as markup
    assert page.locator("table.automl-studies img").count() == 0 and page.evaluate("() => window.pwned") is None
    page.locator(f"tr[data-study='{studies[0]}'] a").click()
    plot = page.locator(".runs-plot.parcoords")
    plot.locator("svg.pc-svg").wait_for()
    assert plot.locator("path.pc-line").count() == 4
    assert page.locator("table.automl-table tbody tr[data-trial]").count() == 4
    # The trials table sorts by a parameter, widest first, and the URL keeps it.
    page.locator("table.automl-table th[data-col='param:width']").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('sort') === 'param:width'")
    widths = [int(w) for w in page.eval_on_selector_all("table.automl-table tbody td[data-col='param:width']", "cs => cs.map(c => c.textContent)")]
    assert widths == sorted(widths, reverse=True) and "order=desc" in page.url
    axis = plot.locator(".pc-axis[data-key='param:width'] .pc-axis-line").bounding_box()
    x, top, height = axis["x"] + axis["width"] / 2, axis["y"], axis["height"]
    page.mouse.move(x, top + height * 0.7)  # from 30 % up the axis ...
    page.mouse.down()
    page.mouse.move(x, top + height * 0.3, steps=4)
    page.mouse.move(x, top - 20, steps=4)  # ... past its top: the widest trials
    page.mouse.up()
    page.wait_for_function("() => new URLSearchParams(location.search).getAll('brush').some(b => b.startsWith('param:width~'))")
    brush = next(b for b in urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["brush"] if b.startswith("param:width~"))
    lo, hi = (float(v) for v in brush.split("~")[1:])
    assert "width ∈ [" in page.locator("[data-ranges]").inner_text()
    assert page.locator("table.automl-table tbody tr.brushed-out").count() >= 1  # the narrowest trial is out
    shot = tmp_path / "study.png"
    page.screenshot(path=str(shot), full_page=True)
    if SHOTS.is_dir():
        shutil.copy(shot, SHOTS / "study.png")
    # A reload restores the brush from the URL.
    page.reload()
    plot.locator(".pc-axis[data-key='param:width'] rect.pc-brush").wait_for()
    page.locator("button[data-action='rerun']").click()
    started = page.locator("[data-new-study]")
    started.wait_for()
    new = started.get_attribute("data-new-study")
    assert new != studies[0]
    got = srv.api.get(f"/api/automl/{new}").json()
    width = got["config"]["h_params"]["width"]
    if width["distribution"] == "categorical":
        assert lo <= width["parameters"][0] <= hi
    else:
        a, b = width["parameters"]
        assert lo <= a < b <= hi and (a, b) != (4, 64), (width, lo, hi)
    assert got["config"]["h_params"]["lr"] == config()["h_params"]["lr"] and "re-run of " + studies[0] in got["memo"]
    # The new study's code is the parent's: its trials run the same script (stopped here: it was proof enough).
    wait_for(lambda: srv.api.get(f"/api/automl/{new}").json()["trial_count"] >= 1, "a trial of the new study", timeout=60)
    assert srv.api.post(f"/api/automl/{new}/stop", params={"force": "true"}).status_code == 200
    for tab, selector in (("history", "[data-chart='history'] .main-svg"), ("importance", "[data-chart='importance'][data-params]"),
                          ("contour", "[data-chart='contour'] .main-svg"), ("lineage", "svg.lineage-svg .lineage-node"),
                          ("slice", "[data-chart='slice'] .main-svg"), ("curves", "[data-chart='series'] .main-svg")):
        page.goto(f"{srv.url}/automl/{studies[0]}?tab={tab}")
        page.locator(selector).first.wait_for()
        if SHOTS.is_dir():
            page.screenshot(path=str(SHOTS / f"study-{tab}.png"), full_page=True)
    page.goto(f"{srv.url}/automl/compare?s={studies[0]}&s={studies[1]}&merge=1")
    page.locator("[data-chart='importance'][data-params]").wait_for()
    assert page.locator(".runs-plot.parcoords path.pc-line").count() == 8
    page.locator(".runs-plot.parcoords").scroll_into_view_if_needed()
    if SHOTS.is_dir():
        page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
    assert not errors, errors
