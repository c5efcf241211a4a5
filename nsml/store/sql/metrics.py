"""Metrics: the journal a session writes, ingested idempotently, and read back as series."""

import json
import math
from itertools import chain
from typing import Any

from sqlalchemy import insert, select

from nsml.core.entities import MetricPoint
from nsml.core.errors import Conflict, NotFound

from .models import PointRow, SeriesRow, SessionRow


def _split_value(value: Any) -> tuple[float | None, str | None]:
    """Numbers go to the REAL column; NaN/inf (which SQLite would turn into NULL), integers too
    large for a float, and anything else to the JSON column, so every value reads back as it was."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number, None
    return None, json.dumps(value)


def _join_value(value: float | None, value_json: str | None) -> Any:
    return value if value_json is None else json.loads(value_json)


def _parse_lines(chunk: bytes) -> list:
    """The JSON values of a chunk of complete lines; a line that does not parse is left out.

    The whole chunk is parsed as one JSON array first (one C call instead of one per line, most of
    the parsing cost); only if that fails, or a torn line merged with the next one, line by line.
    """
    lines = chunk.count(b"\n")
    try:
        items = json.loads(b"[" + chunk[:-1].replace(b"\n", b",") + b"]")
        if len(items) == lines:
            return items
    except (ValueError, RecursionError):
        pass
    items = []
    for raw in chunk.splitlines():
        try:
            items.append(json.loads(raw))
        except (ValueError, RecursionError):
            continue  # a torn line from a killed process; the library never writes bad JSON
    return items


class MetricsMixin:
    def ingest_journal(self, session_id: int, offset: int, data: bytes) -> int:
        """Store the complete lines of data, which starts at byte `offset` of the journal.

        Bytes the server already has are skipped, so a supervisor that retries after a lost
        answer never duplicates a point. Returns the new journal offset.

        All of it happens in one transaction (points, series counts, summary, offset), so a
        point is stored exactly when the offset that covers it is. Speed (bench/README.md): the
        chunk is parsed with one json.loads, points are plain tuples written by one executemany
        of multi-row INSERTs, and series counts are added once per chunk; the ORM's per-row
        bookkeeping used to cost more than SQLite's insert itself.
        """
        with self._write() as orm:
            row = orm.get(SessionRow, session_id)
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
            for line in _parse_lines(data[:end]):
                if type(line) is not dict or line.get("k") != "m":
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
                else:
                    step = _as_step(count if given is None else given)
                count += 1
                wall = line.get("w", 0.0)
                for key, value in values.items():
                    try:
                        sid = ids[key]
                    except KeyError:
                        s = SeriesRow(session_id=session_id, key=key, count=0)
                        orm.add(s)
                        orm.flush()
                        series[key], ids[key] = s, s.id
                        sid = s.id
                    if type(value) is float and value - value == 0.0:  # finite (NaN/inf give NaN)
                        append((sid, step, wall, value, None))
                    else:
                        num, js = _split_value(value)
                        append((sid, step, wall, num, js))
                    added[sid] = added.get(sid, 0) + 1
                if given is not None:
                    last["step"] = given
                last.update(values)
                if line.get("s"):
                    if given is not None:
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
                .where(PointRow.series_id == series_id).order_by(PointRow.step, PointRow.id)
            )
            return [MetricPoint(key, st, w, _join_value(v, j)) for st, w, v, j in rows]

    def count_points(self, session_id: int) -> int:
        with self._read() as orm:
            return sum(orm.scalars(select(SeriesRow.count).where(SeriesRow.session_id == session_id)))


def _as_step(step: Any) -> float | None:
    try:
        return float(step)
    except (TypeError, ValueError, OverflowError):
        return None


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
