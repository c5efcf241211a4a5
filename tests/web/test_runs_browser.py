"""The runs table on the sessions page (runs.js) in a real Chromium against real sessions:
sorting by a metric column (in the server), the query language in the search box and its error,
parallel coordinates (SVG) brushed with the mouse to filter the table, the CSV of the rows
shown, tags shown and added, and the side panel folded away at 800 px. Screenshots land beside the server's home."""

import csv
import io
import os
from pathlib import Path

import pytest

from tests.conftest import push_dataset, start_session

pytestmark = pytest.mark.timeout(240)
SHOTS = Path(os.environ.get("NSML_RUNS_SHOTS", "/tmp/shots-runs"))


@pytest.fixture(scope="module")
def runs(srv, wcli):
    """Three finished sessions of dataset webruns: --lr 0.1, 0.2 and 0.3 (val/acc falls with lr)."""
    push_dataset(wcli, "webruns")
    names = [start_session(wcli, "-d", "webruns", "-a", f"--lr {lr} --epochs 3") for lr in (0.1, 0.2, 0.3)]
    for n in names:
        assert srv.wait(n)["status"] == "exited"
    return names


def shot(page, name):
    if SHOTS.is_dir():
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)


def order_of(page) -> list[str]:
    return page.eval_on_selector_all("table.runs-table tbody tr[data-session]:not(.brushed-out)", "rs => rs.map(r => r.dataset.session)")


def test_the_table_sorts_by_a_metric_column_in_the_server(srv, page, runs):
    page.goto(f"{srv.url}/?q=dataset:webruns")
    head = page.locator("table.runs-table th[data-col='metric:val/acc:last']")  # a summary metric, by default
    head.wait_for()
    assert page.locator("table.runs-table th[data-col='param:lr']").count() == 1  # the parameter that differs
    assert page.locator("table.runs-table th[data-col='param:epochs']").count() == 0  # the same everywhere
    head.click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('sort') === 'metric:val/acc:last'")
    page.wait_for_function("n => document.querySelector(\"table.runs-table th[data-col='metric:val/acc:last']\").classList.contains('desc')", arg=0)
    assert order_of(page) == runs  # the highest val/acc is the lowest lr
    lrs = page.eval_on_selector_all("table.runs-table tbody td[data-col='param:lr']", "cs => cs.map(c => c.textContent)")
    assert lrs == ["0.1", "0.2", "0.3"]
    head.click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('order') === 'asc'")
    page.wait_for_function("first => document.querySelector('table.runs-table tbody tr')?.dataset.session === first", arg=runs[2])
    assert order_of(page) == runs[::-1]
    assert page.locator("table.runs-table tbody tr").first.locator("td[data-col='kind']").inner_text() == "train"
    shot(page, "runs-sorted")
    # The link reproduces the view: the same sort, order and query in a fresh page.
    page.goto(page.url)
    page.wait_for_function("first => document.querySelector('table.runs-table tbody tr')?.dataset.session === first", arg=runs[2])
    assert "asc" in page.locator("table.runs-table th[data-col='metric:val/acc:last']").get_attribute("class")


def test_the_search_box_speaks_the_query_language_and_points_at_a_bad_token(srv, page, runs):
    page.goto(f"{srv.url}/")
    page.locator(f"tr[data-session='{runs[0]}']").wait_for()
    box = page.locator(".runs-q")
    box.fill("dataset:webruns and lr >= 0.2")
    box.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr[data-session]').length === 2")
    assert set(order_of(page)) == set(runs[1:])
    assert "q=dataset%3Awebruns+and+lr+%3E%3D+0.2" in page.url
    box.fill("dataset:webruns status:runing")
    box.press("Enter")
    error = page.locator(".query-error")
    error.wait_for()
    text = error.inner_text()
    assert "'runing' is not a status" in text and "(at character 24)" in text, text
    assert text.splitlines()[-1].index("^") == text.splitlines()[-2].index("status:runing") + len("status:")
    shot(page, "runs-query-error")
    box.fill("dataset:webruns and lr > 5")
    box.press("Enter")
    page.get_by_text("No sessions match “dataset:webruns and lr > 5”.").wait_for()
    assert page.locator(".query-error").is_hidden()
    assert "start one" not in page.locator("table.runs-table").inner_text()


def tick_y(page, key, text) -> float:
    """The page's y pixel of an axis' tick (the middle of its label, drawn centred on it)."""
    box = page.locator(f".pc-axis[data-key='{key}'] .pc-tick text", has_text=text).first.bounding_box()
    return box["y"] + box["height"] / 2


def test_brushing_parallel_coordinates_filters_the_table(srv, page, runs):
    """Parallel coordinates drawn in SVG (parcoords.js), brushed with the mouse as a person does:
    press on the lr axis at 0.15, drag past its top (0.3), let go."""
    refused, errors = [], []  # no WebGL, no eval: nothing the Content-Security-Policy stops
    page.on("console", lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{srv.url}/?q=dataset:webruns&par=1")
    plot = page.locator(".runs-plot.parcoords")
    plot.locator("svg.pc-svg").wait_for()
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr[data-session]').length === 3")
    assert plot.locator("path.pc-line").count() == 3  # one line per row of the page
    labels = page.eval_on_selector_all(".pc-axis .pc-label", "ts => ts.map(t => t.firstChild.nodeValue)")  # less the <title>
    assert "lr" in labels and "val/acc" in labels, labels
    lr_ticks = plot.locator(".pc-axis[data-key='param:lr'] .pc-tick text").all_text_contents()
    assert {"0.1", "0.2", "0.3"} <= set(lr_ticks), lr_ticks  # formatted as the table's numbers
    axis = plot.locator(".pc-axis[data-key='param:lr'] .pc-axis-line").bounding_box()
    x = axis["x"] + axis["width"] / 2
    page.mouse.move(x, tick_y(page, "param:lr", "0.15"))
    page.mouse.down()
    page.mouse.move(x, axis["y"] + axis["height"] / 2, steps=4)
    page.mouse.move(x, axis["y"] - 20, steps=4)  # past the top: up to the largest lr
    page.mouse.up()
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr.brushed-out').length === 1")
    assert order_of(page) == [runs[2], runs[1]]  # newest first, lr 0.1 brushed out
    assert "2 of 3 rows" in page.locator(".brush-note").inner_text()
    assert "brush=param%3Alr%7E0.1" in page.url  # param:lr~0.15…~0.3, give or take a pixel
    assert plot.locator(".pc-axis[data-key='param:lr'] rect.pc-brush").count() == 1

    def faint():
        return page.eval_on_selector_all(".pc-line.out", "ps => ps.map(p => p.dataset.id)")

    def ids(names):
        return sorted(page.eval_on_selector_all("table.runs-table tbody tr[data-session]",
                                                "(rs, names) => rs.filter(r => names.includes(r.dataset.session)).map(r => r.dataset.id)", names))

    assert faint() == ids([runs[0]])
    opacity = page.eval_on_selector(".pc-line.out", "p => +getComputedStyle(p).strokeOpacity")
    assert opacity < 0.3
    # Hovering a line marks its row in the table and names the session.
    line = page.locator(f".pc-line[data-id='{ids([runs[1]])[0]}']")
    lr = plot.locator(".pc-axis[data-key='param:lr'] .pc-axis-line").bounding_box()
    page.mouse.move(lr["x"] + 1, tick_y(page, "param:lr", "0.2"))
    page.locator(".pc-tip", has_text=runs[1]).wait_for()
    assert page.locator(f"tr[data-session='{runs[1]}']").get_attribute("class") == "pc-hot"
    assert line.count() == 1
    shot(page, "runs-parcoords-hover")
    page.mouse.move(x, axis["y"] - 60)
    page.locator(".pc-tip").wait_for(state="hidden")
    assert page.locator("tr.pc-hot").count() == 0
    shot(page, "runs-parcoords-brushed")
    page.keyboard.press("t")  # the dark theme: redrawn with its colour scale, the brush kept
    page.wait_for_function("() => document.documentElement.dataset.theme === 'dark'")
    assert plot.locator(".pc-axis[data-key='param:lr'] rect.pc-brush").count() == 1 and faint() == ids([runs[0]])
    shot(page, "runs-parcoords-dark")
    page.keyboard.press("t")
    # The CSV holds the rows shown: the brushed-out one is not in it.
    with page.expect_download() as dl:
        page.click(".csv-button")
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert [r["session"] for r in rows] == [runs[2], runs[1]]
    assert [float(r["param:lr"]) for r in rows] == [0.3, 0.2]
    assert {r["kind"] for r in rows} == {"train"} and all(r["status"] == "exited" for r in rows)
    assert abs(float(rows[0]["metric:val/acc:last"]) - (1 - (1 / 3 + 0.3) / 2)) < 1e-9
    # The link with the brush draws the same selection in a fresh page.
    page.goto(page.url)
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr.brushed-out').length === 1")
    assert order_of(page) == [runs[2], runs[1]]
    assert plot.locator(".pc-axis[data-key='param:lr'] rect.pc-brush").count() == 1
    assert faint() == ids([runs[0]])
    # A click on the axis without dragging clears its range.
    page.mouse.click(x, tick_y(page, "param:lr", "0.2"))
    page.wait_for_function("() => !document.querySelector('table.runs-table tbody tr.brushed-out')")
    assert page.locator(".brush-note").is_hidden() and "brush=" not in page.url and not faint()
    # A hand-written link: lr 0.15 to 0.25 keeps one row; the chip's clear brings all back.
    page.goto(f"{srv.url}/?q=dataset:webruns&par=1&brush=param:lr~0.15~0.25")
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr[data-session]:not(.brushed-out)').length === 1")
    assert order_of(page) == [runs[1]]
    assert len(faint()) == 2
    page.locator(".brush-note a", has_text="clear").click()
    page.wait_for_function("() => !document.querySelector('table.runs-table tbody tr.brushed-out')")
    assert order_of(page) == runs[::-1] and not page.locator(".pc-line.out").count()
    assert plot.locator("path.pc-line").count() == 3 and "brush=" not in page.url
    assert not refused and not errors, (refused, errors)


def test_a_scatter_selection_filters_the_table(srv, page, runs):
    page.goto(f"{srv.url}/?q=dataset:webruns&scatter=1&px=param:lr&py=metric:val/acc:last")
    box = page.locator(".runs-plot.scatter")
    box.locator(".main-svg").first.wait_for()
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr[data-session]').length === 3")
    assert page.input_value("select[data-axis='px']") == "param:lr"
    page.evaluate("""() => { const gd = document.querySelector('.runs-plot.scatter');
        gd.emit('plotly_selected', {points: gd.data[0].customdata.slice(0, 1).map(c => ({customdata: c}))}); }""")
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr.brushed-out').length === 2")
    shot(page, "runs-scatter")


def test_tags_are_shown_and_added_and_removed_in_the_table(srv, page, runs):
    resp = srv.api.post(f"/api/sessions/{runs[0]}/tags", json={"add": ["baseline"]})
    assert resp.status_code == 200, resp.text
    page.goto(f"{srv.url}/?q=dataset:webruns")
    row = page.locator(f"tr[data-session='{runs[0]}']")
    row.locator(".tag[data-tag='baseline']").wait_for()
    row.locator(".tag-add").click()
    row.locator(".tag-input").fill("wide")
    row.locator(".tag-input").press("Enter")
    row.locator(".tag[data-tag='wide']").wait_for()
    assert srv.api.get(f"/api/sessions/{runs[0]}/tags").json()["tags"] == ["baseline", "wide"]
    row.locator(".tag[data-tag='wide'] .tag-remove").click()
    row.locator(".tag[data-tag='wide']").wait_for(state="detached")
    assert srv.api.get(f"/api/sessions/{runs[0]}/tags").json()["tags"] == ["baseline"]
    row.locator(".tag[data-tag='baseline'] a").click()  # a tag's link queries it
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr[data-session]').length === 1")
    assert page.input_value(".runs-q") == 'tag:"baseline"'


def test_the_column_picker_adds_a_min_column(srv, page, runs):
    page.goto(f"{srv.url}/?q=dataset:webruns")
    page.locator("table.runs-table th[data-col='param:lr']").wait_for()
    page.click(".cols-button")
    page.locator(".col-picker label[data-spec='metric:train/loss:min'] input").check()
    page.locator("table.runs-table th[data-col='metric:train/loss:min']").wait_for()
    assert "col=metric%3Atrain%2Floss%3Amin" in page.url
    page.locator(".col-picker label[data-spec='param:lr'] input").uncheck()
    page.locator("table.runs-table th[data-col='param:lr']").wait_for(state="detached")
    cells = page.eval_on_selector_all("td[data-col='metric:train/loss:min']", "cs => cs.map(c => +c.title)")
    assert sorted(cells) == pytest.approx([1 / 3 + 0.1, 1 / 3 + 0.2, 1 / 3 + 0.3])


def test_the_side_panel_folds_away_at_800_px(srv, browser, runs):
    context = browser.new_context(viewport={"width": 800, "height": 700})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        pg.goto(f"{srv.url}/login?token={srv.token}&next=/%3Fq%3Ddataset%3Awebruns")
        pg.locator(f"tr[data-session='{runs[0]}']").wait_for()
        assert pg.locator("#side").is_visible()
        before = pg.evaluate("document.getElementById('main').getBoundingClientRect().width")
        shot(pg, "runs-800-side")
        pg.click("#side-toggle")
        assert pg.locator("#side").is_hidden()
        after = pg.evaluate("document.getElementById('main').getBoundingClientRect().width")
        assert after > before + 200
        shot(pg, "runs-800-folded")
        pg.reload()  # remembered
        pg.locator(f"tr[data-session='{runs[0]}']").wait_for()
        assert pg.locator("#side").is_hidden()
        pg.click("#side-toggle")
        assert pg.locator("#side").is_visible()
    finally:
        context.close()


def test_the_dataset_and_compare_pages_have_the_table(srv, page, runs):
    page.goto(f"{srv.url}/datasets/webruns?tab=sessions")
    page.wait_for_function("() => document.querySelectorAll('table.runs-table tbody tr[data-session]').length === 3")
    page.goto(f"{srv.url}/compare?s={runs[0]}&s={runs[1]}")
    page.locator(".compare-runs table.runs-table th[data-col='param:lr']").wait_for()
    page.wait_for_function("() => document.querySelectorAll('.compare-runs table.runs-table tbody tr[data-session]').length === 2")
    page.locator(".compare-runs th[data-col='param:lr']").click()
    page.wait_for_function("() => new URLSearchParams(location.search).get('rsort') === 'param:lr'")
    assert page.locator(".args-table").count() == 1  # the graph's own table is still there


def test_the_keys_and_details_the_table_reads(srv, runs):
    """GET /api/runs/keys (the picker, the default columns) and /api/runs?detail=true (kind,
    lineage, memo, queue place of each row)."""
    keys = srv.api.get("/api/runs/keys", params={"q": "dataset:webruns"}).json()
    lr = next(k for k in keys["params"] if k["key"] == "lr")
    assert lr == {"key": "lr", "sessions": 3, "values": 3}
    assert {"train/loss", "val/acc"} <= {k["key"] for k in keys["metrics"]}
    assert set(keys["summary"]) >= {"train/loss", "val/acc"} and "step" not in keys["summary"]
    bad = srv.api.get("/api/runs/keys", params={"q": "status:runing"})
    assert bad.status_code == 400 and "'runing' is not a status" in bad.json()["detail"]
    page = srv.api.get("/api/runs", params={"q": "dataset:webruns", "detail": "true", "param": "lr", "limit": 2}).json()
    assert [r["session"]["kind"] for r in page["rows"]] == ["normal", "normal"]
    assert page["rows"][0]["session"]["args"] == "--lr 0.3 --epochs 3" and page["rows"][0]["session"]["source"] == ""
    assert "session" not in srv.api.get("/api/runs", params={"q": "dataset:webruns"}).json()["rows"][0]
