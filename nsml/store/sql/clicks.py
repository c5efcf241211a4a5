"""Usability analytics' events (nsml.core.clicks): stored as they come, read for the summary."""

from sqlalchemy import delete, insert, select

from .models import UiEventRow

MAX_READ = 200_000  # events a summary reads at most (the newest)


class ClicksMixin:
    def add_ui_events(self, user: str, at: float, events: list[tuple[str, str, int | None]]) -> None:
        """Store checked events (clicks.check_events) of `user`, all at time `at`, in order."""
        if not events:
            return
        with self._write() as orm:
            orm.execute(insert(UiEventRow), [dict(at=at + i * 1e-6, user=user, page=p, action=a, ms=ms)
                                             for i, (p, a, ms) in enumerate(events)])

    def ui_events(self, since: float) -> list[tuple[float, str, str, str, int | None]]:
        """(at, user, page, action, ms) since `since`, oldest first (at most MAX_READ, the newest)."""
        e = UiEventRow
        with self._read() as orm:
            rows = orm.execute(select(e.at, e.user, e.page, e.action, e.ms).where(e.at >= since)
                               .order_by(e.at.desc(), e.id.desc()).limit(MAX_READ)).all()
        return [tuple(r) for r in reversed(rows)]

    def forget_ui_events(self, before: float) -> int:
        """Delete events older than `before`; how many went."""
        with self._write() as orm:
            return orm.execute(delete(UiEventRow).where(UiEventRow.at < before)).rowcount
