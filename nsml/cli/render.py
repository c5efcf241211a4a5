"""Tables and numbers the way NSML prints them: '4 hours ago', '175.81 KB', JSON with -j."""

import json
import math
import os
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


TABLE_MAX_ROWS = 100  # a Rich table costs ~0.7 ms a row; past this many, plain lines (~2 µs a row)
CELL_WIDTH = 60  # columns are padded to their widest cell up to this; a wider cell shifts its row only
GAP = "   "  # between columns, as in the Rich table, so both look alike


def listing(columns: list[str], rows: list[list[Any]]) -> None:
    """A table on a terminal for a screenful of rows; otherwise (a pipe, a file, or more rows
    than a screen holds) plain aligned lines (`lines`)."""
    if console.is_terminal and len(rows) <= TABLE_MAX_ROWS:
        table(columns, rows)
    else:
        lines(columns, rows)


def lines(columns: list[str], rows: list[list[Any]], out=None) -> None:
    """The header, a rule, then one line per row, columns aligned, written as they are made:
    no table is built, and every row stays on one line (newlines in a cell become spaces), so
    `grep` and `awk '{print $1}'` see whole rows. A closed pipe (`| head`) ends it quietly."""
    out = out or sys.stdout
    cells = [[_one_line(c) for c in row] for row in rows]
    widths = [min(CELL_WIDTH, max([len(col)] + [len(r[i]) for r in cells])) for i, col in enumerate(columns)]
    head = _join(columns, widths)
    try:
        out.write(head + "\n" + "─" * len(head) + "\n")
        for i in range(0, len(cells), 500):
            out.write("".join(_join(r, widths) + "\n" for r in cells[i:i + 500]))
        out.flush()
    except BrokenPipeError:
        # The reader is gone: point stdout at /dev/null so the final flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())


def _join(cells: list[str], widths: list[int]) -> str:
    return GAP.join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


_CONTROL = {i: " " for i in range(32)}


def _one_line(value: Any) -> str:
    return str(value).translate(_CONTROL)


def as_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
