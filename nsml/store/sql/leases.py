"""Leases in SQL: one statement each, so two servers on one PostgreSQL never both hold one."""

import time

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError

from .models import LeaseRow


class LeasesMixin:
    def take_lease(self, name: str, holder: str, ttl: float, now: float | None = None) -> bool:
        """Take or renew lease NAME for `ttl` seconds: True when `holder` has it now (it was
        free, had expired, or was already `holder`'s), False while another holds it."""
        now = time.time() if now is None else now
        with self.engine.begin() as conn:  # outside the process's write lock: the database decides
            taken = conn.execute(update(LeaseRow).where(LeaseRow.name == name)
                                 .where((LeaseRow.holder == holder) | (LeaseRow.expires < now))
                                 .values(holder=holder, expires=now + ttl)).rowcount
        if taken:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(LeaseRow).values(name=name, holder=holder, expires=now + ttl))
            return True
        except IntegrityError:  # someone holds it (or took it between the two statements)
            return False

    def release_lease(self, name: str, holder: str) -> None:
        """Give lease NAME up at once (a clean shutdown), if `holder` has it."""
        with self.engine.begin() as conn:
            conn.execute(delete(LeaseRow).where(LeaseRow.name == name, LeaseRow.holder == holder))

    def lease_holder(self, name: str, now: float | None = None) -> str | None:
        """Who holds lease NAME now (None: nobody, or it expired)."""
        now = time.time() if now is None else now
        with self._read() as orm:
            row = orm.get(LeaseRow, name)
            return row.holder if row is not None and row.expires >= now else None
