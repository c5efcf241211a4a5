"""One real server for the web tests, a training script that waits on gate files (so a test
decides when a live log line and a metric point appear), and a logged-in Chromium.

`--gate PATH` is relative to the session's working directory (/app in its sandbox): the test
opens it with conftest.open_gate(srv, name) and, to end the script, gate="PATH.end"."""

from pathlib import Path

import pytest

from tests.conftest import Cli, clean_env, serve_for_module, write_project

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]

TRAIN = '''\
import argparse, os, time
import nsml

p = argparse.ArgumentParser()
p.add_argument("--lr", type=float, default=0.1)
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--gate", default="")
p.add_argument("--mode", default="train")
p.add_argument("--pause", type=int, default=0)
p.add_argument("--iteration", default="0")
a = p.parse_args()
for step in range(a.epochs):
    loss = 1.0 / (step + 1) + a.lr
    nsml.report(step=step, summary=True, train__loss=loss, val__acc=1 - loss / 2, **{"train/loss@std": 0.05})
    print(f"epoch {step} loss {loss:.3f}", flush=True)
if a.gate:
    print("waiting for the gate", flush=True)
    while not os.path.exists(a.gate):
        time.sleep(0.05)
    print("LIVE-LINE after the gate", flush=True)
    nsml.report(step=a.epochs + 10, train__loss=0.0123)
    while not os.path.exists(a.gate + ".end"):
        time.sleep(0.05)
'''


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    yield from serve_for_module(tmp_path_factory, "web")


@pytest.fixture(scope="module")
def wcli(srv, tmp_path_factory) -> Cli:
    work = tmp_path_factory.mktemp("web-work")
    write_project(work / "code", TRAIN)
    return Cli(clean_env(srv.home), work / "code")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def logged_in_page(browser, srv):
    """A fresh browser context logged in the way `nsml web` does it (through /login?token=),
    as a generator for a fixture to yield from: its page, then the context closed."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(30_000)
    pg = context.new_page()
    pg.goto(f"{srv.url}/login?token={srv.token}")
    yield pg
    context.close()


@pytest.fixture
def page(browser, srv):
    yield from logged_in_page(browser, srv)
