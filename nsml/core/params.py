"""A session's parameters, and the columns of the runs table that shows them.

Parameters are what a session was run with, typed: today the `--key value` pairs of its
arguments (parse_args); later also its effective configuration (argparse defaults,
nsml.config()), merged into the same place. The store keeps each as (num, text): `text` is the
value as written (1e-3 stays 1e-3, so nothing of what was typed is lost), `num` its number
when it is one (what comparisons and sorting use). Both None: a value that is None. Read
back (decode) a value is typed again: 32 an int, true a bool, 1e-3 the float 0.001.

The runs table's columns (Column) are a parameter, a metric's last/min/max (read from the
per-series summaries the ingest keeps, never from points), or a field of the session itself.
Everything here is pure: the store and the API call it, and issue 14's query language will
compile to the same columns.
"""

import json
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput

MAX_KEY = 128  # characters of a parameter's name
MAX_TEXT = 1024  # characters of a parameter's value as written
MAX_PARAMS = 256  # parameters of one session
AGGS = ("last", "min", "max")
SESSION_FIELDS = ("id", "name", "status", "created", "started", "ended")
KINDS = ("param", "metric", "session")
MAX_COLUMN_KEY = 256  # characters of a metric key (series.key) or parameter named as a column
MAX_COLUMNS = 100  # parameter columns, and metric columns, of one table

Value = float | int | str | bool | None

# An option: one or two dashes, then a name that starts like an identifier (so '-1' and '-.5'
# stay values). '--key=value' is split at its first '='.
_OPTION = re.compile(r"--?([A-Za-z_][^\s=]*)(?:=(.*))?", re.S)
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def number(text: str) -> float | None:
    """The finite number `text` writes (decimal notation only: never 'nan', 'inf' or '1_000'), else None."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def _shown(text: str) -> str:
    """A refused name as an error message repeats it: short."""
    return repr(text if len(text) <= 60 else text[:60] + "…")


def _key(name: str) -> str:
    # argparse's dest for '--batch-size' is batch_size: the name the effective configuration
    # (issue 14) will give it, so the two land on one key.
    return name.replace("-", "_")


def parse_args(args: str) -> dict[str, Value]:
    """The options of an argument string: `--key value`, `--key=value`, a bare `--flag` (True);
    one dash works as two. Numbers become numbers (int when written as one); a repeated option's
    last value wins (argparse's). Positional words are not parameters and are skipped, and so is
    what cannot be split like a shell would (the API refuses such arguments anyway)."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    out: dict[str, Value] = {}
    i = 0
    while i < len(words):
        match = _OPTION.fullmatch(words[i])
        i += 1
        if match is None:
            continue
        key, inline = _key(match.group(1)), match.group(2)
        if inline is not None:
            out[key] = typed(inline)
        elif i < len(words) and _OPTION.fullmatch(words[i]) is None:
            out[key] = typed(words[i])
            i += 1
        else:
            out[key] = True
    return out


def typed(text: str) -> Value:
    """A written value as the Python value it reads as: 3 → int, 0.01 → float, else the text."""
    value = number(text)
    if value is None:
        return text
    return int(text) if re.fullmatch(r"[+-]?\d+", text.strip()) and abs(value) < 2**63 else value


def encode(value: Value | Any) -> tuple[float | None, str | None]:
    """(num, text) of a value: a bool is 1/0 and 'true'/'false'; a number its value and how
    Python writes it; a string that writes a number keeps its text and gets its number; a list
    or dict its JSON (no number); None nothing."""
    if value is None:
        return None, None
    if isinstance(value, bool):
        return float(value), "true" if value else "false"
    if isinstance(value, (int, float)):
        num = float(value)
        return (num if math.isfinite(num) else None), str(value)
    if isinstance(value, str):
        return number(value), value
    return None, json.dumps(value, default=str, sort_keys=True)


def decode(num: float | None, text: str | None) -> Value:
    """The value encode() stored: bools and ints come back as themselves, texts as written."""
    if text is None:
        return num
    if num is None:
        return text
    if text in ("true", "false"):
        return text == "true"
    return typed(text) if number(text) is not None else num


def check_params(params: Mapping[str, Any]) -> dict[str, tuple[float | None, str | None]]:
    """{key: (num, text)} of parameters to store, or InvalidInput saying which one is out of bounds."""
    if not isinstance(params, Mapping):
        raise InvalidInput("Parameters are a mapping of names to values.")
    if len(params) > MAX_PARAMS:
        raise InvalidInput(f"A session has at most {MAX_PARAMS} parameters; {len(params)} were given.")
    out = {}
    for key, value in params.items():
        check_key(key)
        num, text = encode(value)
        if text is not None and len(text) > MAX_TEXT:
            raise InvalidInput(f"Parameter {_shown(key)}: its value is {len(text)} characters long; at most {MAX_TEXT} are kept.")
        out[key] = (num, text)
    return out


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY or not key.isprintable():
        shown = key[:40] + "…" if isinstance(key, str) and len(key) > 40 else key
        raise InvalidInput(f"Parameter names are 1 to {MAX_KEY} printable characters, not {shown!r}.")
    return key


def storable(params: Mapping[str, Value]) -> dict[str, tuple[float | None, str | None]]:
    """What of the parameters parsed from a session's arguments fits the table: the first
    MAX_PARAMS within bounds. The session is created anyway (its arguments are kept whole);
    only a parameter too long to index is left out."""
    out = {}
    for key, value in params.items():
        num, text = encode(value)
        if len(key) <= MAX_KEY and key.isprintable() and (text is None or len(text) <= MAX_TEXT):
            out[key] = (num, text)
            if len(out) == MAX_PARAMS:
                break
    return out


# -- the runs table's columns --------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One column of the runs table: a parameter (`key`), a metric's `agg` (last, min or max)
    of series `key`, or a session field (`key` one of SESSION_FIELDS)."""

    kind: str
    key: str
    agg: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInput(f"A column is a param, a metric or a session field, not {_shown(str(self.kind))}.")
        if not isinstance(self.key, str) or not self.key or len(self.key) > MAX_COLUMN_KEY:
            raise InvalidInput(f"A column's key is 1 to {MAX_COLUMN_KEY} characters.")
        if self.kind == "metric" and self.agg not in AGGS:
            raise InvalidInput(f"Metric {_shown(self.key)}: the aggregate is one of {', '.join(AGGS)}, not {_shown(self.agg)}.")
        if self.kind != "metric" and self.agg:
            raise InvalidInput(f"Only a metric column has an aggregate ({self.kind} {_shown(self.key)} has {_shown(self.agg)}).")
        if self.kind == "session" and self.key not in SESSION_FIELDS:
            raise InvalidInput(f"A session column is one of {', '.join(SESSION_FIELDS)}, not {_shown(self.key)}.")

    @property
    def spec(self) -> str:
        """How a query names it (parse_sort's inverse)."""
        if self.kind == "session":
            return self.key
        return f"{self.kind}:{self.key}" + (f":{self.agg}" if self.agg else "")


def metric_column(spec: str) -> Column:
    """'val/loss:min' → the min of val/loss; a bare key is its last value. What follows the
    last ':' must be an aggregate (a key with ':' in it is written 'a:b:last')."""
    key, sep, agg = spec.rpartition(":")
    if not sep:
        return Column("metric", spec, "last")
    if agg not in AGGS:
        raise InvalidInput(f"Metric column {_shown(spec)}: after the last ':' comes one of {', '.join(AGGS)}, not {_shown(agg)} "
                           f"(a key with ':' in it is written KEY:last).")
    return Column("metric", key, agg)


def parse_sort(spec: str) -> Column:
    """'created' (or another session field), 'param:lr', 'metric:val/loss:min' (':last' by default)."""
    kind, sep, rest = spec.partition(":")
    if not sep:
        if spec not in SESSION_FIELDS:
            raise InvalidInput(f"Sort by one of {', '.join(SESSION_FIELDS)}, param:KEY or metric:KEY:AGG, not {_shown(spec)}.")
        return Column("session", spec)
    if kind == "param":
        return Column("param", rest)
    if kind == "metric":
        return metric_column(rest)
    raise InvalidInput(f"Sort by one of {', '.join(SESSION_FIELDS)}, param:KEY or metric:KEY:AGG, not {_shown(spec)}.")


def check_order(order: str) -> bool:
    """True for descending."""
    if order not in ("asc", "desc"):
        raise InvalidInput(f"The order is asc or desc, not {_shown(order)}.")
    return order == "desc"


@dataclass(frozen=True)
class RunRow:
    """One session in the runs table: who it is, and the value of each column asked for (None
    where it has none): params {key: value}, metrics {key: {agg: value}}."""

    id: int
    name: str
    status: str
    created: float
    params: dict[str, Value] = field(default_factory=dict)
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
