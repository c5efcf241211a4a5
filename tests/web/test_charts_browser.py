"""The Graph view's charts in a real Chromium (Playwright) against real sessions: raw values under
any smoothing, a constant series drawn flat, legends and axis titles, readable log ticks,
@vector / @stack panels, PNG and CSV export, and lines grouped by a parameter.

NSML_SCREENSHOTS=DIR saves a screenshot of each view there (for looking at, not asserted)."""

import csv
import io
import os

import pytest

from tests.conftest import push_dataset, start_session, write_project

pytestmark = pytest.mark.timeout(300)

CHARTS = '''\
import argparse
import nsml

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
for step in range(600):
    spiky = 104.96 if step == 300 else 1.0 + a.lr + 0.01 * ((step + a.seed) % 7)
    nsml.report(step=step, spiky=spiky, flat=15.0 if step % 3 else 14.999999999999998,
                small=0.3 / (step + 1) + 0.01 + a.seed * 0.001,
                **{"acc@vector:top1": 0.5 + step / 2000, "acc@vector:top5": 0.8 + step / 5000,
                   "time@stack:data": 0.2, "time@stack:compute": 0.5 + a.lr})
'''
SPIKE = 104.96


@pytest.fixture(scope="module")
def runs(srv, wcli):
    """Four finished sessions: --lr 0.1 and 0.2, each with seeds 0 and 1 (so each lr has a spread)."""
    push_dataset(wcli, "charts")
    code = write_project(wcli.cwd.parent / "code-charts", CHARTS)
    names = [start_session(wcli, "-d", "charts", "-a", f"--lr {lr} --seed {seed}", cwd=code) for lr in (0.1, 0.2) for seed in (0, 1)]
    for n in names:
        assert srv.wait(n)["status"] == "exited", wcli("logs", n).stdout
    return names


def shot(page, name, selector=None):
    folder = os.environ.get("NSML_SCREENSHOTS")
    if folder:
        path = os.path.join(folder, f"{name}.png")
        page.locator(selector).screenshot(path=path) if selector else page.screenshot(path=path, full_page=True)


def panel(key):
    return f".panel[data-key='{key}']"


def drawn(page, key, cond="true"):
    """Waits until the panel has traces and `cond` (JS over `p`, the panel div) holds."""
    page.wait_for_function(f"() => {{ const p = document.querySelector(\"{panel(key)}\"); return !!(p && p.data && p.data.length && ({cond})); }}")


def zoom(page, key, lo, hi):
    page.evaluate(f"Plotly.relayout(document.querySelector(\"{panel(key)}\"), {{'xaxis.range[0]': {lo}, 'xaxis.range[1]': {hi}}})")
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('xmax') === '{hi}' && NSML.graph.data.xmax === {hi}")


def test_zooming_into_a_spike_hovers_its_raw_value(srv, page, runs):
    a = runs[0]
    page.goto(f"{srv.url}/compare?s={a}")
    # Unzoomed, 600 points are smoothed (0.6 by default), and the raw line stays drawn beneath at the spike's height.
    drawn(page, "spiky", "p.data.length === 2")
    raw_max, smooth_max = page.evaluate("(sel) => { const d = document.querySelector(sel).data;"
                                        " return [Math.max(...d[0].y), Math.max(...d[1].y)]; }", panel("spiky"))
    assert raw_max == SPIKE and smooth_max < SPIKE / 2
    # Zoomed to 100 raw points, smoothing is off: the one line drawn is the raw points.
    zoom(page, "spiky", 250, 349)
    drawn(page, "spiky", "p.data.length === 1 && p.data[0].x.length === 100")
    box = page.evaluate(f"""(() => {{ const p = document.querySelector("{panel('spiky')}"), L = p._fullLayout, r = p.getBoundingClientRect();
        return [r.left + L._size.l + L.xaxis.l2p(300), r.top + L._size.t + L.yaxis.l2p({SPIKE})]; }})()""")
    page.mouse.move(box[0] - 30, box[1] + 40)
    page.mouse.move(*box)
    hover = page.locator(f"{panel('spiky')} .hoverlayer")
    hover.get_by_text("104.96").wait_for()
    assert a in hover.text_content()
    assert "smoothing off" in page.locator(".load-status").inner_text()
    shot(page, "spike-hover")


def test_a_constant_series_is_flat_in_a_sane_range(srv, page, runs):
    page.goto(f"{srv.url}/compare?s={runs[0]}")
    drawn(page, "flat")
    lo, hi = page.evaluate(f"document.querySelector(\"{panel('flat')}\")._fullLayout.yaxis.range")
    assert lo < 15 - 1 and hi > 15 + 1 and hi - lo < 10  # around 15, not [14.999999999999998, 15]
    ticks = page.locator(f"{panel('flat')} .ytick text").all_text_contents()
    assert "15" in ticks and not any("14.99999" in t for t in ticks)


def test_legends_name_the_runs_and_axes_have_titles(srv, page, runs):
    a, b = runs[:2]
    page.goto(f"{srv.url}/compare?s={a}&s={b}")
    drawn(page, "spiky")
    page.locator(f"{panel('spiky')} .legendtext").first.wait_for()
    assert set(page.locator(f"{panel('spiky')} .legendtext").all_text_contents()) == {a, b}
    assert page.locator(f"{panel('spiky')} .g-xtitle").text_content() == "step"
    assert page.locator(f"{panel('spiky')} .g-ytitle").text_content() == "spiky"
    page.select_option("#x-axis", "relative")
    page.wait_for_function(f"() => document.querySelector(\"{panel('spiky')} .g-xtitle\")?.textContent === 'time since first report (s)'")
    # Log ticks read as the values they stand for (0.02, 0.05, …), never a bare "2" or "5" on a 0.01–0.3 axis.
    page.check("#log-scale")
    drawn(page, "small", "p._fullLayout.yaxis.type === 'log'")
    ticks = [t.replace("−", "-") for t in page.locator(f"{panel('small')} .ytick text").all_text_contents()]
    assert ticks and all(0.005 <= float(t) <= 1 for t in ticks), ticks
    shot(page, "legend-log")


def test_vector_and_stack_keys_get_one_panel_each(srv, page, runs):
    page.goto(f"{srv.url}/compare?s={runs[0]}")
    drawn(page, "acc@vector")
    drawn(page, "time@stack")
    vector = page.evaluate(f"document.querySelector(\"{panel('acc@vector')}\").data.map(t => t.name)")
    assert set(vector) == {"top1", "top5"}
    stack = page.evaluate(f"document.querySelector(\"{panel('time@stack')}\").data.map(t => [t.name, t.stackgroup])")
    assert sorted(stack) == [["compute", runs[0]], ["data", runs[0]]]
    assert page.locator(".panel").count() == 5  # spiky, flat, small, acc, time: no panel per element
    shot(page, "vector-stack")
    shot(page, "stack-panel", panel("time@stack"))


def test_a_panel_exports_png_and_the_raw_points_shown_as_csv(srv, page, runs):
    a = runs[0]
    page.goto(f"{srv.url}/compare?s={a}")
    drawn(page, "spiky")
    zoom(page, "spiky", 250, 349)
    drawn(page, "spiky", "p.data[0].x.length === 100")
    page.hover(panel("spiky"))
    with page.expect_download() as png:
        page.locator(f"{panel('spiky')} .modebar-btn[data-title='Download plot as a PNG']").click()
    assert png.value.suggested_filename == "spiky.png"
    assert open(png.value.path(), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as got:
        page.locator(f"{panel('spiky')} .modebar-btn[data-title^='Download the points shown']").click()
    assert got.value.suggested_filename == "spiky.csv"
    rows = list(csv.reader(io.StringIO(open(got.value.path()).read())))
    assert rows[0] == ["session", "metric", "step", "value"]
    truth = srv.api.get("/api/web/graph", params={"s": a, "xmin": 250, "xmax": 349, "key": "spiky", "buckets": 1000}).json()
    line = truth["series"][a]["spiky"]
    assert line["exact"] and len(line["x"]) == 100
    assert [(r[0], r[1], int(r[2]), float(r[3])) for r in rows[1:]] == [(a, "spiky", x, y) for x, y in zip(line["x"], line["y"])]
    assert ["300", "104.96"] in [r[2:] for r in rows]


def test_grouping_by_a_parameter_draws_one_mean_and_band_per_group(srv, page, runs):
    page.goto(f"{srv.url}/compare?" + "&".join(f"s={n}" for n in runs))
    drawn(page, "small")
    page.select_option("#group-by", "param:lr")
    drawn(page, "small", "p.data.some(t => String(t.meta).startsWith('__group:'))")
    groups = page.evaluate(f"""(() => {{ const d = document.querySelector("{panel('small')}").data;
        return {{ bands: d.filter(t => t.fill === 'tonexty').map(t => t.meta),
                  means: d.filter(t => String(t.meta).startsWith('__group:') && !t.fill && t.hoverinfo !== 'skip').map(t => t.name) }}; }})()""")
    assert sorted(groups["bands"]) == ["__group:lr=0.1", "__group:lr=0.2"]
    assert sorted(groups["means"]) == ["lr=0.1 (2 sessions)", "lr=0.2 (2 sessions)"]
    assert set(page.locator(f"{panel('small')} .legendtext").all_text_contents()) == set(groups["means"])
    assert "group=param%3Alr" in page.url or "group=param:lr" in page.url
    shot(page, "group-by")
    shot(page, "group-by-spiky", panel("spiky"))


def test_the_info_memory_chart_of_an_idle_process_starts_at_zero(srv, page, runs):
    """The server's answer gets three samples (a stand-in, named as such: the real route, with
    `usage` replaced, without the `final` flags an older server leaves out) reading 0 bytes."""
    import json

    def with_samples(route):
        info = route.fetch().json()
        t = info["session"]["created"]
        info["usage"] = {"at": [t, t + 5, t + 10], "cpu": [10, 30, 20], "memory": [0, 0, 0], "gpus": {}}
        route.fulfill(status=200, content_type="application/json", body=json.dumps(info))

    page.route("**/api/web/sessions/**/info", with_samples)
    page.goto(f"{srv.url}/sessions/{runs[0]}?tab=info")
    memory = "#main .panel[data-key$='Memory']"
    page.wait_for_function(f"() => document.querySelector(\"{memory}\")?._fullLayout?.yaxis")
    assert page.evaluate(f"document.querySelector(\"{memory}\")._fullLayout.yaxis.range") == [0, 1]  # not [-0.5, 0.5]
    assert page.locator(f"{memory} .g-ytitle").text_content() == "MB resident"  # a unit that fits: 0 is not 0.00 GB
    cpu = page.evaluate("document.querySelector(\"#main .panel[data-key$='CPU']\")._fullLayout.yaxis.range")
    assert cpu[0] == 0 and cpu[1] >= 30
    shot(page, "info-usage")
