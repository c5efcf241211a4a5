"""Health, identity and the machine's resources."""

import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from nsml import __version__
from nsml.core.entities import Session
from nsml.core.states import Status

from nsml.scheduler import admission
from nsml.scheduler.placement import PRIORITY_NAMES, gpu_ids_of

from .. import scheduling
from ..auth import current_user
from ..schemas import Whoami
from ..state import state

router = APIRouter(prefix="/api", tags=["system"])


@router.get("/health")
def health() -> dict[str, Any]:
    return {"ok": True, "version": __version__, "service": "nsml"}


@router.get("/whoami", response_model=Whoami)
def whoami(request: Request, user: str = Depends(current_user)) -> Whoami:
    return Whoami(user=user, server=str(request.base_url).rstrip("/"), version=__version__)


def _holding(s: Session) -> dict[str, Any]:
    return {
        "session": s.name, "owner": s.owner, "team": s.team, "dataset": s.dataset, "status": s.status.value,
        "cpus": s.resources.cpus, "memory": s.resources.memory, "gpus": s.resources.gpus,
        "gpu_ids": list(gpu_ids_of(s)), "node": s.node, "priority": PRIORITY_NAMES.get(s.priority, str(s.priority)),
        "created": s.created, "started": s.started,
    }


@router.get("/resources")
def resources(request: Request, _user: str = Depends(current_user)) -> dict[str, Any]:
    """The nodes (CPUs, memory, GPUs with holder, utilisation and memory in use), who holds what
    now (per session, per owner), and the queue in the order the scheduler considers it, each
    with its position and the reason it waits."""
    st = state(request)
    running = st.store.list_sessions({Status.RUNNING})
    first = st.nodes[0].name if st.nodes else ""
    holder = {((s.node or first), g): s for s in running for g in gpu_ids_of(s)}
    readings = _latest_gpu_readings(st, running)
    nodes = []
    for n in st.nodes:
        on_node = [s for s in running if (s.node or first) == n.name]
        nodes.append({
            "name": n.name, "cpus": n.cpus, "memory": n.memory,
            "used": {"cpus": sum(s.resources.cpus for s in on_node), "memory": sum(s.resources.memory for s in on_node),
                     "gpus": sum(s.resources.gpus for s in on_node)},
            "gpus": [{"index": g.index, "name": g.model, "memory": g.memory,
                      "holder": holder[(n.name, g.index)].name if (n.name, g.index) in holder else None,
                      **readings.get((n.name, g.index), {"util": None, "memory_used": None})} for g in n.gpus],
        })
    owners: dict[str, dict[str, float]] = {}
    for s in running:
        o = owners.setdefault(s.owner, {"sessions": 0, "cpus": 0.0, "memory": 0, "gpus": 0})
        o["sessions"] += 1
        o["cpus"] += s.resources.cpus
        o["memory"] += s.resources.memory
        o["gpus"] += s.resources.gpus
    waiting = scheduling.current_plan(st).waiting
    now = time.time()
    top = admission.largest(st.nodes)
    return {
        "host": request.url.hostname or "",
        "capacity": {"cpus": sum(n.cpus for n in st.nodes), "memory": sum(n.memory for n in st.nodes),
                     "gpus": sum(len(n.gpus) for n in st.nodes)},
        "largest": {"cpus": top.cpus, "memory": top.memory, "gpus": top.gpus},
        "used": {
            "cpus": sum(s.resources.cpus for s in running),
            "memory": sum(s.resources.memory for s in running),
            "gpus": sum(s.resources.gpus for s in running),
        },
        "nodes": nodes,
        "gpus": [{**g, "node": n["name"]} for n in nodes for g in n["gpus"]],
        "running": [s.name for s in running],
        "queued": [w.session.name for w in waiting],
        "holders": [_holding(s) for s in running],
        "owners": [{"owner": k, **v} for k, v in sorted(owners.items())],
        "queue": [{**_holding(w.session), "position": w.position, "reason": w.reason, "waiting": now - w.session.created}
                  for w in waiting],
    }


def _latest_gpu_readings(st, running: list[Session]) -> dict[tuple[str, int], dict]:
    """Each held GPU's latest sampled utilisation and memory in use (from the usage samples)."""
    first = st.nodes[0].name if st.nodes else ""
    out = {}
    since = time.time() - 60
    for s in running:
        if not s.resources.gpus:
            continue
        samples = st.store.usage(s.id, since)
        if samples:
            for g in samples[-1].gpus:
                out[((s.node or first), g.get("index"))] = {"util": g.get("util"), "memory_used": g.get("memory")}
    return out
