"""Metrics: the journal a session writes, ingested idempotently, and read back as series."""

import json
import math
from itertools import chain
from typing import Any

from sqlalchemy import insert, select

from nsml.core import spool
from nsml.core.entities import MetricPoint
from nsml.core.errors import Conflict, NotFound

from .models import PointRow, SeriesRow, SessionRow


def _split_value(value: Any) -> tuple[float | None, str | None]:
    """Numbers go to the REAL column; integers too large for a float, and anything else, to the
    JSON column, so every value reads back as it was. Raises ValueError for what is not stored:
    NaN and infinities (top-level or nested: they cannot be graphed, sorted or compared, and are
    not JSON) and values over spool.MAX_VALUE as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond a float's range: exact, as JSON
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ValueError("not finite")
            return number, None
    encoded = json.dumps(value, allow_nan=False)  # ValueError for a NaN inside a list or dict
    if len(encoded) > spool.MAX_VALUE:
        raise OverflowError(len(encoded))
    return None, encoded


def _join_value(value: float | None, value_json: str | None) -> Any:
    return value if value_json is None else json.loads(value_json)


class _Notes:
    """What an ingest refused, for the session's log: (about, text) pairs, one per `about` and
    at most spool.NOTES_PER_CHUNK per chunk; the supervisor writes them, once per `about`."""

    def __init__(self, out: list | None):
        self.out = out
        self.seen: set[str] = set()

    def add(self, about: str, text: str) -> None:
        if self.out is None or about in self.seen or len(self.seen) >= spool.NOTES_PER_CHUNK:
            return
        self.seen.add(about)
        self.out.append((about, "[nsml] " + text))

    def value(self, key: str, value: Any, step: Any, exc: Exception) -> None:
        at = "" if step is None else f" at step {step}"
        if isinstance(exc, OverflowError):
            self.add(f"big:{key}", f"the value of {_shown(key)}{at} ({exc.args[0]} bytes as JSON) was not stored: "
                                   f"values may be at most {spool.MAX_VALUE} bytes")
        elif isinstance(value, float):
            self.add(f"finite:{key}", f"{_shown(key)}={value!r}{at} was not stored: metric values must be finite numbers")
        else:
            self.add(f"finite:{key}", f"the value of {_shown(key)}{at} holds NaN or an infinity and was not stored: "
                                      "metric values must be finite numbers")


def _shown(key: str) -> str:
    """A key as the log shows it: itself when short and printable, else a shortened repr."""
    if len(key) <= 80 and key.isprintable():
        return key
    return repr(key[:60]) + ("…" if len(key) > 60 else "")


def _parse_lines(chunk: bytes, notes: _Notes):
    """The JSON values of a chunk of complete lines, as a generator; a line that does not parse,
    or is longer than spool.MAX_LINE (never parsed), is left out with a note.

    Pieces of about MAX_LINE are parsed as one JSON array each (one C call instead of one per
    line, most of the parsing cost) and handed on before the next is parsed, so memory stays
    bounded by the piece, not the chunk; a piece that fails is parsed line by line.
    """
    pos = 0
    for start, end in spool.long_lines(chunk) + [(len(chunk), len(chunk))]:
        while pos < start:  # ordinary lines up to the next long one
            cut = chunk.rfind(b"\n", pos, min(start, pos + spool.MAX_LINE)) + 1
            if cut <= pos:
                cut = start
            yield from _parse_piece(chunk[pos:cut], notes)
            pos = cut
        if end > start:
            notes.add("long", f"a journal line of {end - start} bytes was skipped: lines may be at most {spool.MAX_LINE} bytes")
        pos = max(pos, end)


def _parse_piece(piece: bytes, notes: _Notes) -> list:
    lines = piece.count(b"\n")
    try:
        items = json.loads(b"[" + piece[:-1].replace(b"\n", b",") + b"]")
        if len(items) == lines:
            return items
    except (ValueError, RecursionError):
        pass
    items = []
    for raw in piece.splitlines():
        try:
            items.append(json.loads(raw))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, a torn line from a killed process
            notes.add("garbage", "a journal line that is not JSON was skipped (the journal is nsml.report's: "
                                 "write metrics with nsml.report, not into the file)")
    return items


class MetricsMixin:
    def ingest_journal(self, session_id: int, offset: int, data: bytes, notes: list | None = None) -> int:
        """Store the complete lines of data, which starts at byte `offset` of the journal.

        Bytes the server already has are skipped, so a supervisor that retries after a lost
        answer never duplicates a point. Returns the new journal offset.

        The session wrote these bytes, so it is trusted with nothing: lines that are not
        metric records, over-long lines and keys, keys past spool.MAX_SERIES, NaN and infinite
        numbers and values over spool.MAX_VALUE are not stored, each with an (about, text) pair
        appended to `notes` for the session's log; the rest of the line is. A non-finite step
        is treated as no step, an odd walltime as none (0). Nothing but finite numbers and
        bounded JSON reaches the points, the summary or the last values.

        All of it happens in one transaction (points, series counts, summary, offset), so a
        point is stored exactly when the offset that covers it is. Speed (bench/README.md): the
        chunk is parsed a piece at a time with one json.loads each, points are plain tuples
        written by one executemany of multi-row INSERTs, and series counts are added once per
        chunk; the ORM's per-row bookkeeping used to cost more than SQLite's insert itself.
        """
        noted = _Notes(notes)
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            have = row.journal_offset
            if offset > have:
                raise Conflict(f"journal gap: the server has {have} bytes, the upload starts at {offset}")
            data = data[have - offset:]
            end = data.rfind(b"\n") + 1
            if end == 0:
                return have
            series = {s.key: s for s in orm.scalars(select(SeriesRow).where(SeriesRow.session_id == session_id))}
            ids = {key: s.id for key, s in series.items()}
            added: dict[int, int] = {}  # series id -> points in this chunk
            summary = json.loads(row.summary)
            last = json.loads(row.last_values)
            count = row.report_count
            points = []
            append = points.append
            for line in _parse_lines(data[:end], noted):
                if type(line) is not dict or line.get("k") != spool.METRICS:
                    if type(line) is not dict or line.get("k") != spool.CHECKPOINT:  # the supervisor's
                        noted.add("kind", "a journal line that is not a metrics or checkpoint record was skipped")
                    continue
                values = line.get("v")
                if type(values) is not dict:
                    values = {}
                given = line.get("step")
                if type(given) is int or type(given) is float:  # the usual case, inlined
                    try:
                        step = float(given)
                    except OverflowError:
                        step = None
                    if step is not None and step - step != 0.0:  # NaN or infinite: as if none
                        noted.add("step", f"step={given!r} is not a finite number: the report was stored as "
                                          "one without a step")
                        given = None
                        step = float(count)
                else:
                    step = _as_step(count if given is None else given)
                count += 1
                wall = line.get("w", 0.0)
                if type(wall) is not float or wall - wall != 0.0:
                    wall = _walltime(wall)
                left_out = None  # keys not stored, or kept out of the summary
                for key, value in values.items():
                    if type(value) is float and value - value == 0.0:  # finite (NaN/inf give NaN)
                        num, js = value, None
                    else:
                        try:
                            num, js = _split_value(value)
                        except (ValueError, OverflowError) as exc:
                            noted.value(key, value, given, exc)
                            left_out = (left_out or set()) | {key}
                            continue
                        if js is not None and len(js) > spool.MAX_SUMMARY_VALUE:
                            left_out = (left_out or set()) | {key}
                    try:
                        sid = ids[key]
                    except KeyError:
                        if not spool.valid_key(key):
                            noted.add("key", f"the metric key {_shown(key)} ({len(key)} characters) was not stored: "
                                             f"keys may be 1 to {spool.MAX_KEY} characters")
                            left_out = (left_out or set()) | {key}
                            continue
                        if len(ids) >= spool.MAX_SERIES:
                            noted.add("series", f"the metric {_shown(key)} was not stored: a session may report at most "
                                                f"{spool.MAX_SERIES} different keys")
                            left_out = (left_out or set()) | {key}
                            continue
                        s = SeriesRow(session_id=session_id, key=key, count=0)
                        orm.add(s)
                        orm.flush()
                        series[key], ids[key] = s, s.id
                        sid = s.id
                    append((sid, step, wall, num, js))
                    added[sid] = added.get(sid, 0) + 1
                if left_out:
                    values = {k: v for k, v in values.items() if k not in left_out}
                numbered = type(given) is int or type(given) is float  # what the summary may show as the step
                if numbered:
                    last["step"] = given
                last.update(values)
                if line.get("s"):
                    if numbered:
                        summary["step"] = given
                    summary.update(values)
            if points:
                _insert_points(orm.connection(), points)
                self._points_written(session_id, orm.connection(), points)
            for s in series.values():
                if s.id in added:
                    s.count += added[s.id]
            row.summary, row.last_values = json.dumps(summary), json.dumps(last)
            row.report_count = count
            row.journal_offset = have + end
            return row.journal_offset

    def skip_journal(self, session_id: int, offset: int, length: int) -> int:
        """Move the journal offset past `length` bytes at `offset` that the supervisor did not
        send (a line longer than spool.MAX_LINE); idempotent like ingest_journal. Returns the
        new offset; Conflict if `offset` is past what the server has."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            if offset > row.journal_offset:
                raise Conflict(f"journal gap: the server has {row.journal_offset} bytes, the skip starts at {offset}")
            row.journal_offset = max(row.journal_offset, offset + length)
            return row.journal_offset

    def _points_written(self, session_id: int, conn, points: list[tuple]) -> None:
        """Called in the ingest's transaction with the (series_id, step, walltime, value,
        value_json) tuples just inserted; ViewsMixin rolls them up without reading them back."""

    def series_keys(self, session_id: int) -> dict[str, int]:
        with self._read() as orm:
            rows = orm.execute(select(SeriesRow.key, SeriesRow.count).where(SeriesRow.session_id == session_id))
            return dict(sorted(rows.all()))

    def metric_points(self, session_id: int, key: str) -> list[MetricPoint]:
        with self._read() as orm:
            series_id = orm.scalar(select(SeriesRow.id).where(SeriesRow.session_id == session_id, SeriesRow.key == key))
            if series_id is None:
                return []
            rows = orm.execute(
                select(PointRow.step, PointRow.walltime, PointRow.value, PointRow.value_json)
                .where(PointRow.series_id == series_id).order_by(PointRow.step.asc().nulls_first(), PointRow.id)
            )
            return [MetricPoint(key, st, w, _join_value(v, j)) for st, w, v, j in rows]

    def count_points(self, session_id: int) -> int:
        with self._read() as orm:
            return sum(orm.scalars(select(SeriesRow.count).where(SeriesRow.session_id == session_id)))


def _as_step(step: Any) -> float | None:
    try:
        step = float(step)
    except (TypeError, ValueError, OverflowError):
        return None
    return step if math.isfinite(step) else None


def _walltime(wall: Any) -> float:
    """A line's walltime as the REAL column takes it: a finite number, else 0 (as if none)."""
    if type(wall) is int:
        try:
            wall = float(wall)
        except OverflowError:
            return 0.0
    return wall if type(wall) is float and math.isfinite(wall) else 0.0


_POINT_COLUMNS = ("series_id", "step", "walltime", "value", "value_json")
_ROWS_PER_INSERT = 100  # 500 parameters: under SQLite's historic limit of 999 per statement


def _insert_points(conn, points: list[tuple]) -> None:
    """Insert (series_id, step, walltime, value, value_json) tuples, in order.

    On SQLite: one executemany of multi-row INSERTs (100 rows per statement), which costs about
    a third less than one row per statement: fewer trips through the driver's per-row binding
    and stepping. Elsewhere: Core executemany (insertmanyvalues batching on PostgreSQL).
    """
    table = PointRow.__table__
    if conn.dialect.name != "sqlite":
        conn.execute(insert(table), [dict(zip(_POINT_COLUMNS, p)) for p in points])
        return
    head = f"INSERT INTO {table.name} ({', '.join(_POINT_COLUMNS)}) VALUES "
    row = "(?, ?, ?, ?, ?)"
    full = len(points) - len(points) % _ROWS_PER_INSERT
    if full:
        flat = list(chain.from_iterable(points[:full]))
        width = len(_POINT_COLUMNS) * _ROWS_PER_INSERT
        batches = [tuple(flat[i:i + width]) for i in range(0, len(flat), width)]
        conn.exec_driver_sql(head + ", ".join([row] * _ROWS_PER_INSERT), batches)
    if full < len(points):
        conn.exec_driver_sql(head + row, points[full:])
