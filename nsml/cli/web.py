"""`nsml web`: open the dashboard, logged in, in a browser."""

import os
import sys
import webbrowser
from urllib.parse import quote

import typer

from . import render
from .connection import Api, CliError, resolve, session_path


def web(
    target: str = typer.Argument(None, help="A session (OWNER/DATASET/N) or dataset to open; default: the sessions list.", metavar="SESSION_OR_DATASET"),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL (e.g. on a machine without a display)."),
):
    """Open the web dashboard. The printed login link carries your token: do not share it;
    share the dashboard's own URLs instead (every view's state is in its address)."""
    server = resolve()
    path = "/"
    if target:
        path = _page_of(Api(server), target.strip("/"))
    login = f"{server.url}/login?token={quote(server.token, safe='')}&next={quote(path, safe='')}"
    render.console.print(f"Dashboard: {server.url}{path}", highlight=False, soft_wrap=True)
    render.console.print(f"Login link (contains your token; keep it private): {login}", highlight=False, soft_wrap=True)
    if no_browser:
        return
    if not _has_display() or not webbrowser.open(login):
        render.console.print("No browser could be started here; open the login link above in yours.")


def _page_of(c: Api, target: str) -> str:
    """The dashboard page of a session or dataset that exists (else a "did you mean" error)."""
    if target.count("/") == 2:
        c.get(session_path(target))
        return f"/sessions/{target}"
    if "/" in target:
        raise CliError(f"'{target}' is neither a session (OWNER/DATASET/N, e.g. alice/digits/3) nor a dataset name.")
    c.get(f"/api/datasets/{quote(target, safe='')}")
    return f"/datasets/{quote(target)}"


def _has_display() -> bool:
    """On Linux without X or Wayland (ssh, servers) webbrowser would pick a text browser that
    takes over the terminal; better to print the link."""
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
