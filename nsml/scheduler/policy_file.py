"""The scheduler's policy file (`nsml server --policy policy.yaml`, or NSML_POLICY): fair-share
weights, GPU quotas, credits, reservations and preemption (docs/scheduler.md). YAML or JSON:

    order: fair                 # fair (the default), priority (part 1's queue) or fifo
    weights:                    # a bigger share for some (default 1)
      alice: 2
      team:vision: 3
    max_gpus:                   # GPUs held at once, at most
      user:*: 8                 # every user not named
      team:vision: 16
    reserve: true               # backfill never delays the head of the queue (default true)
    reservations: 4             # how many blocked sessions get a reservation, on distinct nodes
    preempt: true               # preemptible sessions make way for regular ones (default true)
    place_by_end: true          # a node whose sessions end about when this one would, then the fullest (default true)
    credits:                    # 1 credit = 1 GPU-minute, refilled each period up to a cap
      period: 1d
      user:*: {refill: 600, cap: 1200}
      team:vision: {refill: 6000, cap: 6000}

Anything malformed is one clear InvalidInput naming the file and the key, before the server starts.
"""

import math
from pathlib import Path

from nsml.core.accounting import DAY, CreditRule, Credits
from nsml.core.errors import InvalidInput
from nsml.core.resources import parse_duration

from .config_files import read_config
from .placement import ORDERS, Policy

KEYS = {"order", "weights", "max_gpus", "reserve", "reservations", "preempt", "place_by_end", "credits"}


def load_policy(path: str | Path) -> tuple[Policy, Credits]:
    path = Path(path)
    return parse_policy(read_config(path, "the policy"), str(path))


def parse_policy(data, where: str = "the policy") -> tuple[Policy, Credits]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be a mapping with some of: {', '.join(sorted(KEYS))}.")
    unknown = set(map(str, data)) - KEYS
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; it may have {', '.join(sorted(KEYS))}.")
    order = data.get("order", "fair")
    if order not in ORDERS:
        raise InvalidInput(f"{where}: order must be one of {', '.join(ORDERS)}, not {order!r}.")
    weights = {k: _number(v, f"{where}: weights.{k}", positive=True) for k, v in _holders(data.get("weights"), f"{where}: weights").items()}
    quotas = {}
    for k, v in _holders(data.get("max_gpus"), f"{where}: max_gpus").items():
        n = _number(v, f"{where}: max_gpus.{k}")
        if n != int(n):
            raise InvalidInput(f"{where}: max_gpus.{k} is a whole number of GPUs, not {v!r}.")
        quotas[k] = int(n)
    flags = {}
    for key in ("reserve", "preempt", "place_by_end"):
        value = data.get(key, True)
        if not isinstance(value, bool):
            raise InvalidInput(f"{where}: {key} is true or false, not {value!r}.")
        flags[key] = value
    heads = data.get("reservations", Policy.reservations)
    if isinstance(heads, bool) or not isinstance(heads, int) or not 1 <= heads <= 64:
        raise InvalidInput(f"{where}: reservations is how many blocked sessions get one, 1 to 64, not {heads!r}.")
    return Policy(order=order, weights=weights, max_gpus=quotas, reservations=heads, **flags), _credits(data.get("credits"), where)


def _credits(data, where: str) -> Credits:
    if data is None:
        return Credits()
    if not isinstance(data, dict):
        raise InvalidInput(f"{where}: credits is a mapping: period, and holders with {{refill, cap}}.")
    rest = dict(data)
    period = DAY
    if "period" in rest:
        raw = rest.pop("period")
        try:
            period = parse_duration(str(raw))
        except (ValueError, KeyError):
            raise InvalidInput(f"{where}: credits.period is a duration such as 1d or 12h, not {raw!r}.") from None
        if period <= 0:
            raise InvalidInput(f"{where}: credits.period must be longer than 0.")
    rules = {}
    for key, rule in _holders(rest, f"{where}: credits").items():
        if not isinstance(rule, dict) or set(rule) - {"refill", "cap"} or "refill" not in rule:
            raise InvalidInput(f"{where}: credits.{key} is {{refill: N, cap: M}} (credits; cap defaults to refill).")
        refill = _number(rule["refill"], f"{where}: credits.{key}.refill")
        cap = _number(rule.get("cap", refill), f"{where}: credits.{key}.cap")
        if cap < refill:
            raise InvalidInput(f"{where}: credits.{key}.cap ({cap:g}) is below its refill ({refill:g}).")
        rules[key] = CreditRule(refill, cap)
    return Credits(period, rules)


def _holders(data, where: str) -> dict[str, object]:
    """A mapping keyed by user name, team:NAME, user:* or team:*."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} is a mapping of users (NAME, user:*) and teams (team:NAME, team:*).")
    out = {}
    for key, value in data.items():
        key = str(key)
        name = key[5:] if key.startswith(("team:", "user:")) else key
        if not name or (key.startswith("user:") and name != "*") or (name != "*" and not all(c.isalnum() or c in "_.-" for c in name)):
            raise InvalidInput(f"{where}: {key!r} is not a user (NAME, user:*) or a team (team:NAME, team:*).")
        out[key] = value
    return out


def _number(value, where: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise InvalidInput(f"{where} must be a {'positive' if positive else 'non-negative'} number, not {value!r}.")
    return float(value)
