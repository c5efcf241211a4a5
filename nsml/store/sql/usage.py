"""Resource usage samples of sessions, for the web's Info tab and the resources page."""

import json

from sqlalchemy import delete, func, select, text

from nsml.core.entities import UsageSample

from .models import UsageRow

_IDS_PER_QUERY = 500  # well under any database's limit on bound parameters


def _sample(r: UsageRow) -> UsageSample:
    return UsageSample(r.at, r.cpu, r.memory, json.loads(r.gpus), bool(r.final))


class UsageMixin:
    def add_usage(self, session_id: int, at: float, cpu: float, memory: int, gpus: list[dict], final: bool = False) -> None:
        with self._write() as orm:
            orm.merge(UsageRow(session_id=session_id, at=at, cpu=cpu, memory=memory, gpus=json.dumps(gpus), final=final))

    def usage(self, session_id: int, since: float = 0.0) -> list[UsageSample]:
        with self._read() as orm:
            rows = orm.scalars(select(UsageRow).where(UsageRow.session_id == session_id, UsageRow.at > since).order_by(UsageRow.at))
            return [_sample(r) for r in rows]

    def latest_usage(self, session_ids: list[int], since: float = 0.0) -> dict[int, UsageSample]:
        """Each session's newest sample after `since` (sessions without one are left out), in
        one query per few hundred sessions: the resources page asks for every running one."""
        out: dict[int, UsageSample] = {}
        ids = sorted(set(session_ids))
        with self._read() as orm:
            for i in range(0, len(ids), _IDS_PER_QUERY):
                chunk = ids[i:i + _IDS_PER_QUERY]
                newest = (select(UsageRow.session_id, func.max(UsageRow.at).label("at"))
                          .where(UsageRow.session_id.in_(chunk), UsageRow.at > since)
                          .group_by(UsageRow.session_id).subquery())
                rows = orm.scalars(select(UsageRow).join(
                    newest, (UsageRow.session_id == newest.c.session_id) & (UsageRow.at == newest.c.at)))
                out.update((r.session_id, _sample(r)) for r in rows)
        return out

    def drop_usage(self, session_id: int) -> None:
        with self._write() as orm:
            orm.execute(delete(UsageRow).where(UsageRow.session_id == session_id))

    def thin_usage(self, before: float, spacing: float) -> int:
        """Keep, of the samples taken before `before`, the first of each `spacing` seconds per
        session (a week of 5-second samples would be 120,000 rows a session; the charts of old
        days need far fewer), and every run's end summary (`final`): there is one a run, and
        nothing else says what the run used as a whole. Returns how many were deleted."""
        # The minute a sample falls in: PostgreSQL's CAST to an integer rounds (12.7 -> 13),
        # SQLite's truncates, which for these positive times is the floor wanted; FLOOR is not
        # in every SQLite build.
        bucket = "FLOOR(u.at / :spacing)" if self.engine.dialect.name == "postgresql" else "CAST(u.at / :spacing AS INTEGER)"
        with self._write() as orm:
            result = orm.execute(text(
                "DELETE FROM usage WHERE at < :before AND NOT final AND at NOT IN ("
                " SELECT MIN(u.at) FROM usage u WHERE u.session_id = usage.session_id AND u.at < :before AND NOT u.final"
                f" GROUP BY {bucket})"), {"before": before, "spacing": spacing})
            return result.rowcount or 0
