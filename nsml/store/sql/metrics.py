"""Metrics: the journal a session writes, ingested idempotently, and read back as series."""

import json
import math
from typing import Any

from sqlalchemy import insert, select, update

from nsml.core.entities import MetricPoint
from nsml.core.errors import Conflict, NotFound

from .models import PointRow, SeriesRow, SessionRow


def _split_value(value: Any) -> tuple[float | None, str | None]:
    """Numbers go to the REAL column; NaN/inf (which SQLite would turn into NULL) and anything
    else to the JSON column, so every reported value reads back as it was."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
        if math.isfinite(value):
            return value, None
    return None, json.dumps(value)


def _join_value(value: float | None, value_json: str | None) -> Any:
    return value if value_json is None else json.loads(value_json)


class MetricsMixin:
    def ingest_journal(self, session_id: int, offset: int, data: bytes) -> int:
        """Store the complete lines of data, which starts at byte `offset` of the journal.

        Bytes the server already has are skipped, so a supervisor that retries after a lost
        answer never duplicates a point. Returns the new journal offset.
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
            summary = json.loads(row.summary)
            last = json.loads(row.last_values)
            count = row.report_count
            points = []
            for raw in data[:end].splitlines():
                try:
                    line = json.loads(raw)
                except ValueError:
                    continue  # a torn line from a killed process; the library never writes bad JSON
                if line.get("k") != "m":
                    continue
                values = line.get("v", {})
                step = line.get("step")
                step = count if step is None else step
                count += 1
                wall = line.get("w", 0.0)
                for key, value in values.items():
                    s = series.get(key)
                    if s is None:
                        s = SeriesRow(session_id=session_id, key=key, count=0)
                        orm.add(s)
                        orm.flush()
                        series[key] = s
                    s.count += 1
                    num, js = _split_value(value)
                    points.append({"series_id": s.id, "step": _as_step(step), "walltime": wall, "value": num, "value_json": js})
                shown = dict(values)
                if line.get("step") is not None:
                    shown = {"step": line["step"], **shown}
                last.update(shown)
                if line.get("s"):
                    summary.update(shown)
            if points:
                orm.execute(insert(PointRow), points)
            row.summary, row.last_values = json.dumps(summary), json.dumps(last)
            row.report_count = count
            row.journal_offset = have + end
            return row.journal_offset

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
    except (TypeError, ValueError):
        return None
