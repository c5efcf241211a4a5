"""Resource usage samples of sessions, for the web's Info tab."""

import json

from sqlalchemy import delete, select, text

from nsml.core.entities import UsageSample

from .models import UsageRow


class UsageMixin:
    def add_usage(self, session_id: int, at: float, cpu: float, memory: int, gpus: list[dict]) -> None:
        with self._write() as orm:
            orm.merge(UsageRow(session_id=session_id, at=at, cpu=cpu, memory=memory, gpus=json.dumps(gpus)))

    def usage(self, session_id: int, since: float = 0.0) -> list[UsageSample]:
        with self._read() as orm:
            rows = orm.scalars(select(UsageRow).where(UsageRow.session_id == session_id, UsageRow.at > since).order_by(UsageRow.at))
            return [UsageSample(r.at, r.cpu, r.memory, json.loads(r.gpus)) for r in rows]

    def drop_usage(self, session_id: int) -> None:
        with self._write() as orm:
            orm.execute(delete(UsageRow).where(UsageRow.session_id == session_id))

    def thin_usage(self, before: float, spacing: float) -> int:
        """Keep, of the samples taken before `before`, the first of each `spacing` seconds per
        session (a week of 5-second samples would be 120,000 rows a session; the charts of old
        days need far fewer). Returns how many were deleted."""
        with self._write() as orm:
            result = orm.execute(text(
                "DELETE FROM usage WHERE at < :before AND at NOT IN ("
                " SELECT MIN(u.at) FROM usage u WHERE u.session_id = usage.session_id AND u.at < :before"
                " GROUP BY CAST(u.at / :spacing AS INTEGER))"), {"before": before, "spacing": spacing})
            return result.rowcount or 0
