"""Tables and numbers the way NSML prints them: '4 hours ago', '175.81 KB', JSON with -j."""

import json
import math
import sys
import time
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from nsml.core.resources import format_size

# Text from users and servers (names, paths, descriptions, commands) may hold '[...]' or
# ':name:'; with markup or emoji on, Rich would restyle it or crash on it. soft_wrap keeps
# a long message on one line, so errors stay one line however narrow the terminal.
_plain = dict(highlight=False, markup=False, emoji=False, soft_wrap=True)
console = Console(**_plain)
if not console.is_terminal:  # piped or captured: keep each row on one line, as NSML's CLI does
    console = Console(**_plain, width=240)
err_console = Console(stderr=True, **_plain)


def ago(ts: float | None) -> str:
    if not ts:
        return ""
    delta = max(0, time.time() - ts)
    if delta < 10:
        return "just now"
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if delta >= seconds:
            n = int(delta // seconds)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def size(n: int) -> str:
    return format_size(n)


def plural(n: int, word: str) -> str:
    """'1 file', '2 files', '0 files'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def summary(values: dict[str, Any], limit: int = 6) -> str:
    items = list(values.items())
    text = ", ".join(f"{k}={value(v)}" for k, v in items[:limit])
    return text + (", …" if len(items) > limit else "")


def table(columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*[Text(str(c)) for c in row])
    console.print(t)


def as_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
