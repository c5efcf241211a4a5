"""Health, identity and the machine's resources."""

import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from nsml import __version__
from nsml.core.entities import Session, UsageSample
from nsml.core.policy import Actor
from nsml.core.states import Status

from nsml.scheduler import admission
from nsml.scheduler import placement
from nsml.scheduler.placement import PRIORITY_NAMES, gpu_ids_of

from .. import scheduling
from ..auth import current_actor, current_user
from ..schemas import Whoami
from ..state import state

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/health")
def health() -> dict[str, Any]:
    return {"ok": True, "version": __version__, "service": "nsml"}


@router.get("/whoami", response_model=Whoami)
def whoami(request: Request, actor: Actor = Depends(current_actor)) -> Whoami:
    return Whoami(user=actor.name, server=str(request.base_url).rstrip("/"), version=__version__, admin=actor.admin,
                  teams=sorted(actor.teams))


STALE_AFTER = 60.0  # seconds: an older sample says nothing of what a session uses now (sampled every 5 s)


def _holding(s: Session) -> dict[str, Any]:
    """A session's request: `cpus`, `memory` and `gpus` are what it reserved, not what it uses."""
    return {
        "session": s.name, "owner": s.owner, "team": s.team, "dataset": s.dataset, "status": s.status.value,
        "cpus": s.resources.cpus, "memory": s.resources.memory, "gpus": s.resources.gpus,
        "gpu_ids": list(gpu_ids_of(s)), "node": s.node, "priority": PRIORITY_NAMES.get(s.priority, str(s.priority)),
        "created": s.created, "started": s.started,
    }


def _reserved(sessions: list[Session]) -> dict[str, Any]:
    return {"cpus": sum(s.resources.cpus for s in sessions), "memory": sum(s.resources.memory for s in sessions),
            "gpus": sum(s.resources.gpus for s in sessions)}


def _in_use(sample: UsageSample | None) -> dict[str, Any] | None:
    """What a running session uses, from its latest usage sample: CPU as cores busy (the
    sample's % of one core / 100), resident memory in bytes, and per GPU its utilisation and
    memory; None while it has no recent sample (just started, or its process is gone)."""
    if sample is None:
        return None
    return {"at": sample.at, "cpus": round(sample.cpu / 100.0, 3), "memory": sample.memory,
            "gpus": [{"index": g.get("index"), "util": g.get("util"), "memory": g.get("memory")} for g in sample.gpus]}


def _sum_in_use(uses: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The sum over sessions, with how many of them had a sample (`sampled` of `sessions`), so
    a total over half the sessions is not read as the whole."""
    known = [u for u in uses if u is not None]
    return {"cpus": round(sum(u["cpus"] for u in known), 3), "memory": sum(u["memory"] for u in known),
            "sampled": len(known), "sessions": len(uses)}


@router.get("/resources")
def resources(request: Request, _user: str = Depends(current_user)) -> dict[str, Any]:
    """The nodes (CPUs, memory, GPUs with holder, utilisation and memory in use), who holds what
    now (per session, per owner), and the queue in the order the scheduler considers it, each
    with its position and the reason it waits. What sessions asked for is `reserved` (`used`,
    its older name, holds the same figures); what they use, from their latest usage samples,
    is `in_use` (docs/web.md)."""
    st = state(request)
    running = st.store.list_sessions({Status.RUNNING})
    first = st.nodes[0].name if st.nodes else ""
    holder = {((s.node or first), g): s for s in running for g in gpu_ids_of(s)}
    in_use = _latest_in_use(st, running)
    readings = {((s.node or first), g["index"]): {"util": g["util"], "memory_used": g["memory"]}
                for s in running if in_use[s.id] for g in in_use[s.id]["gpus"]}
    nodes = []
    for n in st.nodes:
        on_node = [s for s in running if (s.node or first) == n.name]
        reserved = _reserved(on_node)
        nodes.append({
            "name": n.name, "cpus": n.cpus, "memory": n.memory,
            "used": reserved,  # what the sessions on it reserved (the older name of `reserved`)
            "reserved": reserved, "in_use": _sum_in_use([in_use[s.id] for s in on_node]),
            "gpus": [{"index": g.index, "name": g.model, "memory": g.memory,
                      "holder": holder[(n.name, g.index)].name if (n.name, g.index) in holder else None,
                      **readings.get((n.name, g.index), {"util": None, "memory_used": None})} for g in n.gpus],
        })
    owners: dict[str, list[Session]] = {}
    for s in running:
        owners.setdefault(s.owner, []).append(s)
    waiting = scheduling.current_plan(st).waiting
    now = time.time()
    top = admission.largest(st.nodes)
    reserved = _reserved(running)
    return {
        "host": request.url.hostname or "",
        "capacity": {"cpus": sum(n.cpus for n in st.nodes), "memory": sum(n.memory for n in st.nodes),
                     "gpus": sum(len(n.gpus) for n in st.nodes)},
        "largest": {"cpus": top.cpus, "memory": top.memory, "gpus": top.gpus},
        "used": reserved,  # reserved by the running sessions (kept for older clients)
        "reserved": reserved,
        "in_use": _sum_in_use([in_use[s.id] for s in running]),
        "nodes": nodes,
        "gpus": [{**g, "node": n["name"]} for n in nodes for g in n["gpus"]],
        "running": [s.name for s in running],
        "queued": [w.session.name for w in waiting],
        "holders": [{**_holding(s), "in_use": in_use[s.id]} for s in running],
        "owners": [{"owner": k, "sessions": len(v), **_reserved(v), "in_use": _sum_in_use([in_use[s.id] for s in v])}
                   for k, v in sorted(owners.items())],
        "queue": [{**_holding(w.session), "position": w.position, "reason": w.reason, "waiting": now - w.session.created}
                  for w in waiting],
        # Fair share (docs/scheduler.md): each user's and team's weighted dominant share of what
        # it holds, lowest (served next) first; the policy's order and whether credits apply.
        "policy": {"order": st.scheduler.policy.order, "credits": st.scheduler.credits.enabled},
        "standing": placement.standing(running, [w.session for w in waiting], st.nodes, st.scheduler.policy),
    }


def _latest_in_use(st, running: list[Session]) -> dict[int, dict[str, Any] | None]:
    """Each running session's use now, from its latest sample of this attempt taken in the last
    STALE_AFTER seconds (one query for all of them); None where there is none."""
    latest = st.store.latest_usage([s.id for s in running], time.time() - STALE_AFTER)
    out = {}
    for s in running:
        sample = latest.get(s.id)
        fresh = sample is not None and not sample.final and sample.at >= (s.started or 0.0)
        out[s.id] = _in_use(sample if fresh else None)
    return out
