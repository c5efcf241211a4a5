"""`nsml web`: open the dashboard, logged in, in a browser."""

import os
import sys
import webbrowser
from urllib.parse import quote

import typer

from . import render
from .connection import resolve


def web(
    target: str = typer.Argument(None, help="A session (OWNER/DATASET/N) or dataset to open; default: the sessions list."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Only print the URL (e.g. on a machine without a display)."),
):
    """Open the web dashboard. The printed login link carries your token: do not share it;
    share the dashboard's own URLs instead (every view's state is in its address)."""
    server = resolve()
    path = "/"
    if target:
        target = target.strip("/")
        path = f"/sessions/{target}" if target.count("/") == 2 else f"/datasets/{quote(target)}"
    login = f"{server.url}/login?token={quote(server.token, safe='')}&next={quote(path, safe='')}"
    render.console.print(f"Dashboard: {server.url}{path}", highlight=False, soft_wrap=True)
    render.console.print(f"Login link (contains your token; keep it private): {login}", highlight=False, soft_wrap=True)
    if no_browser:
        return
    if not _has_display() or not webbrowser.open(login):
        render.console.print("No browser could be started here; open the login link above in yours.")


def _has_display() -> bool:
    """On Linux without X or Wayland (ssh, servers) webbrowser would pick a text browser that
    takes over the terminal; better to print the link."""
    if sys.platform != "linux":
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
