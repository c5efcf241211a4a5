"""The session page's Pause and Resume buttons (stop-and-go) in a real Chromium against a real
server with a real session; every wait is Playwright's own "until this is true"."""

import pytest

from tests.cli.test_pause import TRAIN, holding
from tests.conftest import Cli, clean_env, start_session, write_project

pytestmark = pytest.mark.timeout(240)


def test_the_owner_pauses_and_resumes_a_session_from_its_page(srv, page, tmp_path):
    cli = Cli(clean_env(srv.home), write_project(tmp_path / "code", TRAIN))
    name = start_session(cli, "-a", "--steps 4 --hold-at 1")
    holding(srv, name)
    page.goto(f"{srv.url}/sessions/{name}")
    page.locator("#pause-session").click()
    page.locator(".page-head .badge.st-paused").wait_for()
    note = page.locator(".pause-note")
    note.wait_for()
    checkpoint = srv.session(name)["pause_checkpoint"]
    assert note.inner_text().strip() == f"at checkpoint {checkpoint}"
    page.locator("#resume-session").click()  # queued again, then run from the checkpoint to its end
    page.locator(".page-head .badge.st-exited").wait_for()
    info = srv.session(name)
    assert (info["attempt"], info["resumed_from"]) == (2, checkpoint)


def test_pause_is_greyed_with_the_reason_for_a_script_without_a_save(srv, page, tmp_path):
    from tests.conftest import open_gate

    cli = Cli(clean_env(srv.home), write_project(tmp_path / "code", TRAIN))
    name = start_session(cli, "-a", "--bind none --steps 3 --hold-at 0")
    try:
        holding(srv, name, pausable=False)
        page.goto(f"{srv.url}/sessions/{name}")
        button = page.locator("#pause-session")
        button.wait_for()
        assert button.is_disabled() and "has not bound a save function" in button.get_attribute("title")
    finally:
        open_gate(srv, name)
    srv.wait(name)
