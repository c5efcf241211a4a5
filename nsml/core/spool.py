"""The spool: what a session's process and its supervisor exchange, in one place.

The user process (hostile by assumption) writes into its spool; the supervisor reads it and
ships it; the store ingests the journal. All three use this module for the file names, the
record kinds and the checks, so a record the library writes is exactly what the others accept,
and nothing the session writes can make the supervisor or the server read, upload or delete
anything outside the spool.

Journal lines (``journal.ndjson``, one JSON object per line, docs/internals.md):

- ``{"k":"m","w":WALLTIME,"step":STEP,"s":SUMMARY,"v":{KEY: VALUE, ...}}`` metrics;
- ``{"k":"b","c":[NAME, ...],"r":[[VALUE, ...], ...]}`` a batch of metrics records: each row
  of ``r`` is one report, its values named by ``c`` in order; the name ``walltime`` (always
  there) is its walltime, ``step`` (if there) its step, every other name a metric key. A batch
  is never a summary. report()'s encoder writes consecutive reports of the same keys so
  (``batch_records`` says what one stands for): a row costs a fifth of a line to encode and to
  ingest (docs/internals.md);
- ``{"k":"c","w":WALLTIME,"name":NAME,"dir":"checkpoints/IDENT"}`` a finished checkpoint;
- ``{"k":"p","w":WALLTIME,"v":{KEY: VALUE, ...}}`` configuration (nsml.config(), argparse):
  merged into the session's parameters, a later value of a key winning;
- ``{"k":"g","w":WALLTIME,"e":EVENT,"name":NAME,"error":TEXT}`` stop-and-go (`nsml pause`,
  preemption; nsml.client.stopgo): EVENT ``ready`` (a save is bound and SIGUSR1 is the
  library's: the session may be paused), ``paused`` (it saved checkpoint NAME for a pause and
  ends now) or ``failed`` (that save raised TEXT; it keeps running).

Standard library only: the user library imports it.
"""

import os
import re

JOURNAL = "journal.ndjson"
LOG = "output.log"
RELAUNCH = "relaunch.json"
PREDICTION = "prediction.txt"
CHECKPOINTS = "checkpoints"
USER_PID = "user.pid"
SOCKET = "supervisor.sock"   # the user process's only way to the platform

METRICS = "m"
BATCH = "b"
CHECKPOINT = "c"
CONFIG = "p"
STOP_AND_GO = "g"
READY, PAUSED, PAUSE_FAILED = "ready", "paused", "failed"  # a stop-and-go line's events
MAX_PAUSE_ERROR = 500  # characters of a failed pause's error kept (the traceback goes to the log)

# Bounds on what a session may hand over in one piece. A line over MAX_LINE is skipped whole
# (with a note in the log) rather than read into memory.
MAX_LINE = 1 << 20
MAX_KEY = 256
MAX_CHECKPOINT_NAME = 255
MAX_VALUE = 64 << 10         # one metric value, as JSON: a histogram fits, a dumped dataset does not
MAX_SUMMARY_VALUE = 1 << 10  # larger values are stored as points but kept out of the summary
MAX_SERIES = 1000            # distinct metric keys per session
NOTES_PER_CHUNK = 20         # notes the ingest hands back for one journal chunk

# The metrics line, formatted directly by the library's hot path (encoding the fixed envelope as
# a dict costs half again as much): walltime (repr), step, summary and values (JSON each).
METRICS_LINE = '{"k":"' + METRICS + '","w":%r,"step":%s,"s":%s,"v":%s}'
_IDENT = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,127}")


class SpoolError(ValueError):
    """A record the session wrote that the platform refuses; the message says why."""


def batch_records(line: dict) -> list[dict] | None:
    """The metrics records (as ``{"k":"m",...}`` lines parse) a batch line stands for, or None
    if it is not a well-formed batch: ``c`` a list of distinct strings naming ``walltime``,
    ``r`` a list of lists each as long as ``c``. Its values are not checked here: the ingest
    checks them as it checks any metrics line's."""
    names, rows = line.get("c"), line.get("r")
    if type(names) is not list or type(rows) is not list or "walltime" not in names \
            or not all(type(name) is str for name in names) or len(set(names)) != len(names):
        return None
    width = len(names)
    if not all(type(row) is list and len(row) == width for row in rows):
        return None
    records = []
    for row in rows:
        values = dict(zip(names, row))
        walltime = values.pop("walltime")
        records.append({"k": METRICS, "w": walltime, "step": values.pop("step", None), "s": False, "v": values})
    return records


def checkpoint_dir(ident: str) -> str:
    """The journal's ``dir`` for a checkpoint folder the library made under checkpoints/."""
    if not _IDENT.fullmatch(ident) or ".." in ident:
        raise SpoolError(f"bad checkpoint folder name {ident!r}")
    return f"{CHECKPOINTS}/{ident}"


def checkpoint_record(line: dict) -> tuple[str, str]:
    """(name, dir) of a checkpoint line, checked: the name is printable text, the folder one
    level under checkpoints/ with a plain name. Raises SpoolError."""
    name, folder = line.get("name"), line.get("dir")
    if not isinstance(name, str) or not name or len(name) > MAX_CHECKPOINT_NAME or "/" in name \
            or any(ord(ch) < 32 for ch in name):
        raise SpoolError(f"bad checkpoint name {name!r}")
    if not isinstance(folder, str):
        raise SpoolError(f"bad checkpoint folder {folder!r}")
    head, _, ident = folder.partition("/")
    if head != CHECKPOINTS:
        raise SpoolError(f"checkpoint folder {folder!r} is not under {CHECKPOINTS}/")
    checkpoint_dir(ident)
    return name, folder


def inside(spool: str, relative: str) -> str:
    """The absolute path of `relative` in `spool`, refusing anything that leaves it: '..',
    absolute paths, and symlinks anywhere on the way (the session could point one at the blob
    store). Raises SpoolError."""
    if not relative or relative.startswith("/") or "\x00" in relative:
        raise SpoolError(f"{relative!r} is not a path inside the spool")
    root = os.path.realpath(spool)
    path = root
    for part in relative.split("/"):
        if part in ("", ".", ".."):
            raise SpoolError(f"{relative!r} is not a plain path inside the spool")
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise SpoolError(f"{relative!r} goes through a symbolic link")
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise SpoolError(f"{relative!r} leaves the spool")
    return path


def finite_or_error(key: str, value) -> None:
    """Metric values must be finite numbers or other JSON; NaN and infinities are refused with a
    message naming the key (they cannot be graphed, sorted or compared)."""
    if type(value) is float and value - value != 0.0:  # NaN and ±inf give NaN (no math import: the library loads this)
        raise SpoolError(f"{key}={value!r} is not a finite number")


def valid_key(key) -> bool:
    return isinstance(key, str) and 0 < len(key) <= MAX_KEY


def checkpoint_line(walltime: float, name: str, ident: str) -> str:
    """The journal line announcing a finished checkpoint folder checkpoints/IDENT (no newline)."""
    import json

    return json.dumps({"k": CHECKPOINT, "w": walltime, "name": name, "dir": checkpoint_dir(ident)},
                      separators=(",", ":"))


def config_line(walltime: float, values: dict) -> str:
    """The journal line recording configuration values (no newline); ValueError if not JSON."""
    import json

    return json.dumps({"k": CONFIG, "w": walltime, "v": values}, separators=(",", ":"), allow_nan=False)


def stop_and_go_line(walltime: float, event: str, name: str = "", error: str = "") -> str:
    """The journal line of a stop-and-go event (no newline)."""
    import json

    record = {"k": STOP_AND_GO, "w": walltime, "e": event}
    if name:
        record["name"] = name
    if error:
        record["error"] = error[:MAX_PAUSE_ERROR]
    return json.dumps(record, separators=(",", ":"))


def stop_and_go_record(line: dict) -> tuple[str, str]:
    """(event, detail) of a stop-and-go line, checked: detail is the checkpoint's name for
    ``paused`` (a name checkpoint_record would take), the error for ``failed`` (text, cut to
    MAX_PAUSE_ERROR), '' for ``ready``. Raises SpoolError."""
    event = line.get("e")
    if event == READY:
        return event, ""
    if event == PAUSED:
        name = line.get("name")
        if not isinstance(name, str) or not name or len(name) > MAX_CHECKPOINT_NAME or "/" in name \
                or any(ord(ch) < 32 for ch in name):
            raise SpoolError(f"bad checkpoint name {name!r} in a pause record")
        return event, name
    if event == PAUSE_FAILED:
        error = line.get("error", "")
        if not isinstance(error, str):
            raise SpoolError("a failed pause's error is not text")
        return event, error[:MAX_PAUSE_ERROR]
    raise SpoolError(f"unknown stop-and-go event {str(event)[:40]!r}")


def checkpoint_in(raw: bytes) -> dict | None:
    """The record of one journal line (at most MAX_LINE bytes) if it is a checkpoint line."""
    if b'"' + CHECKPOINT.encode() + b'"' not in raw:  # cheap test first: metric lines are the vast majority
        return None
    import json

    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return record if type(record) is dict and record.get("k") == CHECKPOINT else None


def long_lines(data: bytes, limit: int = MAX_LINE) -> list[tuple[int, int]]:
    """(start, end) of each line in data longer than `limit` bytes, its newline included; a last
    line without a newline counts once it is longer than `limit` (end is then len(data)).

    Looks at each window of `limit` bytes for its last newline (C speed), so a chunk of ordinary
    lines costs a few calls, not one per line.
    """
    spans = []
    start, size = 0, len(data)
    while start < size:
        if size - start <= limit:
            break  # what is left is shorter than a long line
        newline = data.rfind(b"\n", start, start + limit)
        if newline >= 0:
            start = newline + 1
            continue
        end = data.find(b"\n", start + limit)
        end = size if end < 0 else end + 1
        spans.append((start, end))
        start = end
    return spans
