"""Usability analytics in the browser: a server that opted in records page views, time on page
and named controls (never a URL or a name), and the admins' /usability page summarises them;
a server that did not records nothing."""

import pytest

from tests.conftest import serve_for_module


@pytest.fixture(scope="module")
def srv(tmp_path_factory):  # overrides conftest's: this server opted in
    yield from serve_for_module(tmp_path_factory, "web-usability", env={"NSML_USAGE_ANALYTICS": "1"})


def test_views_leaves_and_clicks_are_recorded_and_summarised(page, srv):
    page.goto(f"{srv.url}/")
    page.wait_for_selector("#main >> text=/No sessions|Session/")
    assert page.evaluate("document.body.dataset.analytics") == "on"
    page.click("#theme")  # a named control
    page.goto(f"{srv.url}/resources")  # leaving home: its time on page, sent by beacon
    page.wait_for_selector("h1:has-text('Resources')")
    page.evaluate("NSML.usability.post(false)")
    page.wait_for_timeout(500)
    summary = srv.api.get("/api/web/usability").json()
    pages = {p["page"]: p for p in summary["pages"]}
    assert pages["home"]["views"] >= 1 and pages["resources"]["views"] >= 1
    assert pages["home"]["mean_seconds"] is not None
    assert {"page": "home", "control": "theme", "clicks": 1} in summary["controls"]
    assert {"from": "home", "to": "resources", "count": 1} in summary["moves"]
    page.click("#top nav a[data-nav='usability']")  # an admin's link, shown where analytics are on
    page.wait_for_selector("h1:has-text('Usability')")
    assert "on" in page.get_attribute("#top nav a[data-nav='usability']", "class")
    text = page.inner_text("#main")
    assert "Pages" in text and "Back and forth" in text and "resources" in text
    assert srv.url not in text and "alice/" not in text  # kinds of page only


def test_a_server_that_did_not_opt_in_sends_nothing(browser, tmp_path_factory):
    gen = serve_for_module(tmp_path_factory, "web-no-usability")
    plain = next(gen)
    try:
        context = browser.new_context()
        pg = context.new_page()
        posted = []
        pg.on("request", lambda r: posted.append(r.url) if "/api/web/events" in r.url else None)
        pg.goto(f"{plain.url}/login?token={plain.token}")
        pg.wait_for_selector("#main >> text=/No sessions|Session/")
        assert pg.evaluate("document.body.dataset.analytics") == "off"
        pg.wait_for_selector("#me:not(:empty)")  # whoami answered: the nav is complete
        assert pg.locator("#top nav a[data-nav='usability']").count() == 0
        pg.click("#theme")
        pg.goto(f"{plain.url}/resources")
        pg.wait_for_timeout(300)
        assert posted == []
        context.close()
    finally:
        gen.close()
