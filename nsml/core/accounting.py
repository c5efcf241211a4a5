"""GPU-time accounting and NSML-style credits, as pure functions of usage spans.

A span is one attempt of a session that held GPUs: who (owner, team), how many GPUs, from when
to when (an attempt still running ends "now"). The store keeps ended attempts in its usage
ledger and adds the running ones; everything here is arithmetic on those.

Credits (NSML's hackathon quota): 1 credit = 1 GPU-minute. Each holder with a rule gets `refill`
credits at the start of every period (a day by default), never holding more than `cap`; what
its sessions use is taken off as they use it, so a balance may end a period below zero when a
session ran past it, and the next refills pay that back first. A holder starts full (at its cap)
the first period it is seen.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class Span:
    owner: str
    team: str
    gpus: int
    started: float
    ended: float | None  # None: still running
    session_id: int | None = None  # whose attempt (an AutoML study sums its trials' GPU-hours)

    def holders(self) -> tuple[str, ...]:
        """The keys it is charged to: its owner, and its team as `team:NAME`."""
        return (self.owner, f"team:{self.team}") if self.team else (self.owner,)

    def gpu_seconds(self, since: float, until: float) -> float:
        end = until if self.ended is None else min(self.ended, until)
        return self.gpus * max(0.0, end - max(self.started, since))


@dataclass(frozen=True)
class CreditRule:
    refill: float  # credits (GPU-minutes) added at the start of each period
    cap: float  # the most a holder can have

    def __post_init__(self):
        if not (math.isfinite(self.refill) and math.isfinite(self.cap)) or self.refill < 0 or self.cap < 0:
            raise ValueError("a credit rule's refill and cap are finite numbers >= 0")


def gpu_hours_by_day(spans: Iterable[Span], since: float, until: float) -> dict[str, dict[int, float]]:
    """{holder: {day index (UTC days since the epoch): GPU-hours}} over [since, until), each
    span split at day boundaries."""
    out: dict[str, dict[int, float]] = {}
    for span in spans:
        if not span.gpus:
            continue
        start = max(span.started, since)
        end = until if span.ended is None else min(span.ended, until)
        while start < end:
            day = int(start // DAY)
            cut = min(end, (day + 1) * DAY)
            hours = span.gpus * (cut - start) / 3600.0
            for holder in span.holders():
                days = out.setdefault(holder, {})
                days[day] = days.get(day, 0.0) + hours
            start = cut
    return out


def credit_balance(spans: Iterable[Span], rule: CreditRule, period: float, now: float, history: float = 366 * DAY) -> float:
    """A holder's credits at `now`, from the spans charged to it: full at the first period of
    the window (`history` back, or its first use if later), then refilled each period up to the
    cap, less what was used. `period` in seconds."""
    if period <= 0:
        raise ValueError("a credit period is a positive number of seconds")
    spans = [s for s in spans if s.gpus and (s.ended is None or s.ended > now - history)]
    first = max(now - history, min((s.started for s in spans), default=now))
    k0, k_now = int(first // period), int(now // period)
    if k_now - k0 > 10_000:  # a tiny period over a long history: start nearer (full) instead
        k0 = k_now - 10_000
    used = [0.0] * (k_now - k0 + 1)  # GPU-minutes used in each period
    for s in spans:
        for k in range(max(k0, int(max(s.started, k0 * period) // period)), k_now + 1):
            lo, hi = k * period, min((k + 1) * period, now)
            used[k - k0] += s.gpu_seconds(lo, hi) / 60.0
            if s.ended is not None and s.ended <= hi:
                break
    balance = rule.cap
    for i, minutes in enumerate(used):
        if i:
            balance = min(rule.cap, balance + rule.refill)
        balance -= minutes
    return balance


def next_refill(period: float, now: float) -> float:
    """When the next period starts."""
    return (int(now // period) + 1) * period


@dataclass(frozen=True)
class Credits:
    """A server's credit rules: keys are a user's name, `team:NAME`, or `user:*` / `team:*`
    for every user or team not named. No rule for a holder: its GPU time is not limited."""

    period: float = DAY
    rules: dict[str, CreditRule] | None = None

    def rule(self, key: str) -> CreditRule | None:
        rules = self.rules or {}
        return rules.get(key, rules.get("team:*" if key.startswith("team:") else "user:*"))

    @property
    def enabled(self) -> bool:
        return bool(self.rules)
