"""The dashboard in a real Chromium (Playwright) against a real server with real sessions.

Scripts wait on gate files (relative to the session's working directory, /app in its sandbox;
conftest.open_gate creates them there), so the test decides when a live log line and metric
point appear;
every wait is Playwright's own "until this is true" (no sleeps, no timed asserts).
"""

import shutil
from urllib.parse import quote

import pytest

from tests.conftest import Cli, clean_env, open_gate, push_dataset, start_session, write_project

from .conftest import TRAIN

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def pair(srv, wcli):
    """Two finished sessions of dataset webb: --lr 0.1 and --lr 0.2, one changed code line."""
    push_dataset(wcli, "webb")
    a = start_session(wcli, "-d", "webb", "-a", "--lr 0.1 --epochs 3")
    other = write_project(wcli.cwd.parent / "code-b", TRAIN.replace("loss = 1.0 / (step + 1)", "loss = 2.0 / (step + 1)"))
    b = start_session(wcli, "-d", "webb", "-a", "--lr 0.2 --epochs 3", cwd=other)
    srv.wait(a)
    srv.wait(b)
    return a, b


def panel_has_x(page, key: str, x: float):
    page.wait_for_function(
        "([key, x]) => { const p = document.querySelector(`.panel[data-key='${key}']`);"
        " return !!(p && p.data && p.data.some(t => t.meta !== '__mean' && Array.from(t.x).includes(x))); }",
        arg=[key, x])


def test_a_running_session_shows_a_log_line_and_a_metric_point_live(srv, wcli, page):
    push_dataset(wcli, "weblive")
    name = start_session(wcli, "-d", "weblive", "-a", "--epochs 3 --gate gate")
    try:
        page.goto(f"{srv.url}/sessions/{name}")
        page.locator("#log").get_by_text("waiting for the gate").wait_for()
        graph = page.context.new_page()
        graph.goto(f"{srv.url}/sessions/{name}?tab=graph")
        panel_has_x(graph, "train/loss", 2)
        open_gate(srv, name)  # the script now prints a line and reports step 13
        page.locator("#log").get_by_text("LIVE-LINE after the gate").wait_for()
        panel_has_x(graph, "train/loss", 13)
        page.fill("#log-search", "LIVE-LINE")
        assert page.locator("#log mark").count() == 1
    finally:
        open_gate(srv, name, gate="gate.end")
    srv.wait(name)


def test_comparing_two_sessions_shows_their_differing_argument(srv, page, pair):
    a, b = pair
    page.goto(f"{srv.url}/compare?s={a}&s={b}")
    page.locator(".args-table th[data-key='lr']").wait_for()
    rows = page.locator(".args-table tbody tr")
    assert rows.count() == 2
    assert {rows.nth(i).locator("td.differs").inner_text() for i in range(2)} == {"0.1", "0.2"}
    assert "epochs=3" in page.locator(".args-box .common").inner_text()
    page.locator(".panel[data-key='val/acc']").wait_for()
    page.locator(f".args-table tr[data-session='{b}']").hover()  # highlights that session
    assert "hl" in page.locator(f".args-table tr[data-session='{b}']").get_attribute("class")
    page.locator("body").press("/")  # keyboard: "/" focuses the session search
    assert page.evaluate("document.activeElement.id") == "search"


def test_the_diff_tab_shows_changed_code_and_arguments(srv, page, pair):
    a, b = pair
    page.goto(f"{srv.url}/sessions/{a}?tab=diff")
    page.fill("#diff-with", b)
    page.press("#diff-with", "Enter")
    changed = page.locator(".diff-file[data-path='main.py']")
    changed.locator("td.ins", has_text="2.0 / (step + 1)").wait_for()
    assert "1.0 / (step + 1)" in changed.locator("td.del").first.inner_text()
    assert page.locator(".args-diff tr.differs").first.inner_text().split()[0] == "lr"
    assert f"b={b}" in page.url.replace("%2F", "/")  # the picked session is part of the link


def test_a_shared_link_reproduces_the_view(srv, page, pair):
    a, b = pair
    page.goto(f"{srv.url}/compare?s={a}&s={b}")
    page.locator(".panel[data-key='train/loss'] .main-svg").first.wait_for()
    page.select_option("#x-axis", "relative")
    page.locator(".panel[data-key='train/loss'] .main-svg").first.wait_for()
    page.fill("#smoothing", "0.3")
    page.check("#log-scale")
    page.fill("#metric-filter", "loss")
    page.locator(f".args-table tr[data-session='{b}'] input[type=checkbox]").uncheck()
    page.locator(".args-table th[data-key='lr']").click()
    page.locator(".args-table th[data-key='lr']").click()  # twice: descending
    page.wait_for_function("() => document.querySelector(\".panel[data-key='train/loss']\")?.data?.length > 0")
    # A box zoom (what a drag does) on one panel: every panel follows and finer data is fetched.
    page.evaluate("Plotly.relayout(document.querySelector(\".panel[data-key='train/loss']\"), {'xaxis.range[0]': 0, 'xaxis.range[1]': 0.5})")
    page.wait_for_function("() => new URLSearchParams(location.search).get('xmax') === '0.5'")
    shared = page.url

    other = page.context.browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        friend = other.new_page()
        friend.goto(f"{srv.url}/login?token={srv.token}&next=" + quote(shared.split(srv.url, 1)[1], safe=""))
        friend.locator(".panel[data-key='train/loss']").wait_for()
        assert friend.url == shared
        assert friend.input_value("#x-axis") == "relative"
        assert friend.input_value("#smoothing") == "0.3"
        assert friend.is_checked("#log-scale") and friend.input_value("#metric-filter") == "loss"
        assert friend.locator(".panel").count() == 1  # val/acc is filtered out
        assert not friend.is_checked(f".args-table tr[data-session='{b}'] input[type=checkbox]")
        assert "desc" in friend.locator(".args-table th[data-key='lr']").get_attribute("class")
        friend.wait_for_function("() => { const p = document.querySelector(\".panel[data-key='train/loss']\");"
                                 " return p && p.layout && p.layout.yaxis.type === 'log' && p.layout.xaxis.range[1] === 0.5; }")
        shown = friend.evaluate("document.querySelector(\".panel[data-key='train/loss']\").data.map(t => t.meta)")
        assert set(shown) == {a}  # the hidden session stays hidden
    finally:
        other.close()


NOTE = """## Why wide
Tried **hidden 256**: `val/acc` up, see [the board](/datasets/webb) and *not* [this](javascript:alert(1)).

- one <img src=x onerror="window.pwned=1">
- two
"""


def test_the_note_is_written_and_read_as_markdown_that_cannot_inject_markup(srv, page, pair):
    a, _ = pair
    page.goto(f"{srv.url}/sessions/{a}?tab=info")
    page.click("#note-edit")
    page.fill("#note", NOTE)
    page.click("#note-save")
    view = page.locator("#note-view")
    view.locator("h5").wait_for()  # "## " under the Info tab's h3s
    assert view.locator("h5").inner_text() == "Why wide"
    assert view.locator("strong").inner_text() == "hidden 256" and view.locator("code").inner_text() == "val/acc"
    assert [view.locator("li").nth(i).inner_text() for i in range(2)] == ['one <img src=x onerror="window.pwned=1">', "two"]
    links = view.locator("a")
    assert links.count() == 1 and links.get_attribute("href") == "/datasets/webb"  # javascript: stays text
    assert view.locator("img").count() == 0 and page.evaluate("window.pwned") is None
    assert srv.api.get(f"/api/sessions/{a}/note").json()["note"] == NOTE
    page.reload()
    page.locator("#note-view strong").wait_for()  # kept, and shown rendered on the next visit


def test_the_dataset_page_reads_a_leaderboard(srv, page, tmp_path):
    from tests.cli.test_relaunch import PROJECT, write_board_dataset

    work = tmp_path / "board-work"
    shutil.copytree(PROJECT, work)
    cli = Cli(clean_env(srv.home), work)
    cli("dataset", "push", "webboard", write_board_dataset(tmp_path / "board-data"), "--leaderboard")
    source = start_session(cli, "-d", "webboard")
    assert srv.wait(source)["status"] == "exited", cli("logs", source).stdout
    cli("submit", source, "2", timeout=180)
    page.goto(f"{srv.url}/datasets/webboard")
    row = page.locator("table.board tbody tr").first
    row.wait_for()
    assert source in row.inner_text() and "alice" in row.inner_text()
    page.get_by_role("button", name="all submissions").click()
    page.locator("table.board tbody tr").first.wait_for()
    assert "all=1" in page.url

    # The submitted checkpoint says so, with the board's score, in its JSON and on its tab;
    # the submit session's row in the runs table names the checkpoint and the score too.
    http = srv.api
    score = http.get("/api/datasets/webboard/board").json()["rows"][0]["score"]
    ckpts = {c["name"]: c for c in http.get(f"/api/sessions/{source}/checkpoints").json()}
    runs = http.get("/api/runs", params={"q": "dataset:webboard kind:submit", "detail": "true"}).json()["rows"]
    assert [(x["status"], x["score"], x["test"]) for x in ckpts["2"]["submissions"]] == [("scored", score, False)]
    assert all(not c["submissions"] for name, c in ckpts.items() if name != "2")
    runner = ckpts["2"]["submissions"][0]["runner"]
    assert [r["name"] for r in runs] == [runner] and runs[0]["session"]["submission"]["score"] == score
    page.goto(f"{srv.url}/sessions/{source}?tab=checkpoints")
    cell = page.locator("tr[data-checkpoint='2'] td.submitted a.submission-scored")
    cell.wait_for()
    assert cell.get_attribute("href") == f"/sessions/{runner}"
    shown = float(cell.inner_text().split()[1])
    assert abs(shown - score) <= 1e-3 * max(1.0, abs(score))  # as NSML.fmt.num rounds it
    page.goto(f"{srv.url}/datasets/webboard?tab=sessions")
    lineage = page.locator(f"table.runs-table tr[data-session='{runner}'] td[data-col='lineage']")
    lineage.wait_for()
    assert source in lineage.inner_text() and "@ 2" in lineage.inner_text() and "score" in lineage.inner_text()


def test_the_private_scope_shows_only_your_sessions(srv, page, pair, tmp_path):
    from tests.cli.test_datasets import add_user
    from tests.conftest import tar_of

    from .conftest import TRAIN

    bob = add_user(srv, "bob", "bobs-web-token")
    resp = bob.post("/api/sessions", params={"dataset": "webb", "args": "--epochs 1"}, content=tar_of({"main.py": TRAIN.encode()}))
    assert resp.status_code == 201, resp.text
    bobs = resp.json()["name"]
    srv.wait(bobs)
    page.goto(f"{srv.url}/")
    page.wait_for_selector(f"tr[data-session='{bobs}']")
    page.click("button[data-scope='private']")
    page.wait_for_selector(f"tr[data-session='{bobs}']", state="detached")
    assert page.locator(f"tr[data-session='{pair[0]}']").count() == 1
    assert "scope=private" in page.url
    page.goto(page.url)  # the shared link keeps the scope
    page.wait_for_selector(f"tr[data-session='{pair[0]}']")
    assert page.locator(f"tr[data-session='{bobs}']").count() == 0


def test_the_login_page_logs_in_with_a_username_and_password(srv, browser):
    """A user the admin added logs in through the form (no `nsml web` link), lands on the
    sessions page, and a wrong password keeps them out with a message."""
    import httpx

    resp = srv.api.post("/api/users", json={"name": "webuser", "password": "a long passphrase"})
    assert resp.status_code == 201, resp.text
    context = browser.new_context()
    context.set_default_timeout(30_000)
    pg = context.new_page()
    try:
        pg.goto(f"{srv.url}/login")
        pg.fill("input[name=username]", "webuser")
        pg.fill("input[name=password]", "not it at all")
        pg.click("button[type=submit]")
        assert "Wrong username or password." in pg.inner_text(".error")
        assert not [c for c in context.cookies() if c["name"] == "nsml_token"]
        pg.fill("input[name=username]", "webuser")
        pg.fill("input[name=password]", "a long passphrase")
        pg.click("button[type=submit]")
        pg.wait_for_url(f"{srv.url}/")
        [cookie] = [c for c in context.cookies() if c["name"] == "nsml_token"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        who = httpx.get(f"{srv.url}/api/whoami", cookies={"nsml_token": cookie["value"]}).json()
        assert who["user"] == "webuser"
    finally:
        context.close()


def test_the_dashboard_runs_under_its_content_security_policy(srv, page, pair):
    """No page asks for anything the CSP (nsml/server/web_security.py) refuses, and the page's
    own cookie-authenticated PATCH passes the Origin rule."""
    a, b = pair
    refused, errors = [], []
    page.on("console", lambda msg: refused.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    for path, ready in [("/", f"text={a}"), (f"/compare?s={a}&s={b}", ".panel[data-key='train/loss'] .main-svg"),
                        (f"/sessions/{a}?tab=info", "#memo-save"), ("/resources", "#main h2, #main table")]:
        page.goto(f"{srv.url}{path}")
        page.locator(ready).first.wait_for()
    assert page.evaluate("document.documentElement.dataset.theme") in ("light", "dark")  # theme.js ran
    page.goto(f"{srv.url}/sessions/{a}?tab=info")
    page.fill("#memo", "saved under the CSP")
    page.click("#memo-save")
    page.get_by_text("Memo saved").wait_for()
    assert srv.session(a)["memo"] == "saved under the CSP"
    assert not refused and not errors, (refused, errors)
