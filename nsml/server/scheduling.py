"""What the scheduler knows of a session, for listings: a queued one's position and reason, a
running one's idle (zombie) GPUs. Shared by the API, the CLI's `ps` and the web."""

import threading
import time
from collections.abc import Sequence

from nsml.core.entities import Session
from nsml.core.states import Status
from nsml.scheduler.placement import Plan, Waiting
from nsml.scheduler.usage import zombie_gpus

from .schemas import SessionPublic
from .state import ServerState

PLAN_CACHE_S = 1.0  # a listing polled by many dashboards plans the queue at most once a second
_cache: dict[int, tuple[float, Plan]] = {}
_lock = threading.Lock()


def current_plan(st: ServerState) -> Plan:
    with _lock:
        cached = _cache.get(id(st))
        if cached and time.monotonic() - cached[0] < PLAN_CACHE_S:
            return cached[1]
    plan = st.scheduler.plan()
    with _lock:
        _cache[id(st)] = (time.monotonic(), plan)
    return plan


def waiting_of(st: ServerState) -> dict[int, Waiting]:
    return {w.session.id: w for w in current_plan(st).waiting}


def public(st: ServerState, sessions: Sequence[Session]) -> list[SessionPublic]:
    """Sessions as the API shows them, with queue positions and zombie flags filled in."""
    waiting = waiting_of(st) if any(s.status == Status.QUEUED for s in sessions) else {}
    now = time.time()
    after = st.settings.zombie_after
    out = []
    for s in sessions:
        zombie = []
        if s.status == Status.RUNNING and s.resources.gpus and s.started and now - s.started >= after:
            zombie = zombie_gpus(st.store.usage(s.id, now - after - 60), after, now)
        out.append(SessionPublic.of(s, waiting.get(s.id), zombie))
    return out
