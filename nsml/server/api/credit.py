"""GPU credits and GPU-time accounting: the JSON twins of `nsml credit` and `nsml usage`.

Credits (1 credit = 1 GPU-minute, refilled each period up to a cap) come from the policy file's
rules (nsml.scheduler.policy_file) and the usage ledger (nsml.core.accounting); a server without
rules has them off. Usage is visible to its holder: a user sees their own and their teams'; an
admin sees everyone's (`all=true`).
"""

import datetime as dt
import time

from fastapi import APIRouter, Depends, Query, Request

from nsml.core.accounting import DAY, gpu_hours_by_day, next_refill
from nsml.core.errors import Forbidden
from nsml.core.policy import Actor

from ..auth import current_actor
from ..schemas import Credit, CreditBalance, UsageReport, UsageRow
from ..state import state

router = APIRouter(prefix="/api", tags=["system"])
MAX_DAYS = 366


@router.get("/credit", response_model=Credit)
def credit(request: Request, actor: Actor = Depends(current_actor)) -> Credit:
    scheduler = state(request).scheduler
    credits = scheduler.credits
    holders = [actor.name, *(f"team:{t}" for t in sorted(actor.teams))]
    ruled = [(h, credits.rule(h)) for h in holders if credits.rule(h) is not None]
    if not ruled:
        why = "this server does not limit GPU time" if not credits.enabled else "no credit rule applies to you or your teams"
        return Credit(user=actor.name, enabled=False, credit=None, message=why)
    now = time.time()
    left = scheduler.balances([h for h, _ in ruled], now)
    committed = scheduler.committed([h for h, _ in ruled], now)
    balances = [CreditBalance(holder=h, credit=round(left[h] / 60, 2), refill=r.refill, cap=r.cap,
                              committed=round(committed.get(h, 0.0) / 60, 2)) for h, r in ruled]
    mine = next((b.credit for b in balances if b.holder == actor.name), None)
    return Credit(user=actor.name, enabled=True, credit=mine, period=credits.period,
                  next_refill=next_refill(credits.period, now), balances=balances)


@router.get("/usage", response_model=UsageReport)
def usage(request: Request, days: int = Query(14, ge=1, le=MAX_DAYS, description="The last N days (UTC), today included."),
          all: bool = Query(False, description="Everyone's (admins only); else yours and your teams'."),
          actor: Actor = Depends(current_actor)) -> UsageReport:
    if all and not actor.admin:
        raise Forbidden("Only an admin may see everyone's usage; without all=true you see yours and your teams'.")
    now = time.time()
    first_day = int(now // DAY) - days + 1
    holders = None if all else [actor.name, *(f"team:{t}" for t in sorted(actor.teams))]
    spans = state(request).store.usage_spans(first_day * DAY, holders)
    by_holder = gpu_hours_by_day(spans, first_day * DAY, now)
    if holders is not None:
        by_holder = {h: v for h, v in by_holder.items() if h in holders}
    rows = [UsageRow(holder=h, hours=[round(v.get(d, 0.0), 6) for d in range(first_day, first_day + days)],
                     total=round(sum(v.values()), 6)) for h, v in by_holder.items()]
    rows.sort(key=lambda r: (r.holder.startswith("team:"), -r.total, r.holder))
    labels = [dt.datetime.fromtimestamp(d * DAY, dt.timezone.utc).date().isoformat() for d in range(first_day, first_day + days)]
    return UsageReport(days=labels, rows=rows)
