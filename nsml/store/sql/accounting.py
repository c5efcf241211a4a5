"""The usage ledger read back as spans (nsml.core.accounting): what GPU-time accounting and
credits are computed from. Rows are written by move_session when an attempt ends."""

from collections.abc import Iterable

from sqlalchemy import or_, select

from nsml.core.accounting import Span
from nsml.core.states import Status

from .models import SessionRow, UsageLedgerRow


class AccountingMixin:
    def usage_spans(self, since: float, holders: Iterable[str] | None = None) -> list[Span]:
        """Attempts that held GPUs and ended after `since` (from the ledger), and the running
        ones (ended None); with `holders` (user names and `team:NAME`), only those charged to one."""
        users = teams = None
        if holders is not None:
            keys = list(holders)
            users = [k for k in keys if not k.startswith("team:")]
            teams = [k[5:] for k in keys if k.startswith("team:")]
        with self._read() as orm:
            ended = select(UsageLedgerRow).where(UsageLedgerRow.ended > since, UsageLedgerRow.gpus > 0)
            running = select(SessionRow).where(SessionRow.status == Status.RUNNING.value, SessionRow.started.is_not(None),
                                               SessionRow.gpus > 0)
            if users is not None:
                ended = ended.where(or_(UsageLedgerRow.owner.in_(users), UsageLedgerRow.team.in_(teams)))
                running = running.where(or_(SessionRow.owner.in_(users), SessionRow.team.in_(teams)))
            spans = [Span(r.owner, r.team, r.gpus, r.started, r.ended, r.session_id) for r in orm.scalars(ended)]
            spans += [Span(r.owner, r.team, r.gpus, r.started, None, r.id) for r in orm.scalars(running)]
            return spans
