"""Tables and numbers the way NSML prints them: '4 hours ago', '175.81 KB', JSON with -j."""

import json
import math
import sys
import time
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from nsml.core.resources import format_size

console = Console(highlight=False)
if not console.is_terminal:  # piped or captured: keep each row on one line, as NSML's CLI does
    console = Console(highlight=False, width=240)
err_console = Console(stderr=True, highlight=False)


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
        t.add_row(*[str(c) for c in row])
    console.print(t)


def as_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
