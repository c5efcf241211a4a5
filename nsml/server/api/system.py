"""Health, identity and the machine's resources."""

import time
from typing import Any

from fastapi import APIRouter, Depends, Request

from nsml import __version__
from nsml.core.entities import Session
from nsml.core.states import Status

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
        "session": s.name, "owner": s.owner, "dataset": s.dataset, "status": s.status.value,
        "cpus": s.resources.cpus, "memory": s.resources.memory, "gpus": s.resources.gpus,
        "gpu_ids": [int(g) for g in s.gpu_ids.split(",") if g.strip().isdigit()],
        "created": s.created, "started": s.started,
    }


def _gpus(st) -> list[tuple[int, str, int]]:
    """The GPUs the scheduler hands out: discovered ones, or bare indices when the server was
    told a GPU count it could not see (--gpus N on a machine without NVML)."""
    found = [(g.index, g.name, g.memory) for g in st.gpus][: st.capacity.gpus]
    return found or [(i, "", 0) for i in range(st.capacity.gpus)]


@router.get("/resources")
def resources(request: Request, _user: str = Depends(current_user)) -> dict[str, Any]:
    """What the machine has, who holds what now (per session, per owner, per GPU) and the queue
    in the order the scheduler considers it (oldest first; a smaller request may start earlier)."""
    st = state(request)
    running = st.store.list_sessions({Status.RUNNING})
    queued = sorted(st.store.list_sessions({Status.QUEUED}), key=lambda s: (s.created, s.id))
    holders = {g: s.name for s in running for g in _holding(s)["gpu_ids"]}
    owners: dict[str, dict[str, float]] = {}
    for s in running:
        o = owners.setdefault(s.owner, {"sessions": 0, "cpus": 0.0, "memory": 0, "gpus": 0})
        o["sessions"] += 1
        o["cpus"] += s.resources.cpus
        o["memory"] += s.resources.memory
        o["gpus"] += s.resources.gpus
    now = time.time()
    return {
        "host": request.url.hostname or "",
        "capacity": {"cpus": st.capacity.cpus, "memory": st.capacity.memory, "gpus": st.capacity.gpus},
        "used": {
            "cpus": sum(s.resources.cpus for s in running),
            "memory": sum(s.resources.memory for s in running),
            "gpus": sum(s.resources.gpus for s in running),
        },
        "gpus": [{"index": i, "name": name, "memory": mem, "holder": holders.get(i)} for i, name, mem in _gpus(st)],
        "running": [s.name for s in running],
        "queued": [s.name for s in queued],
        "holders": [_holding(s) for s in running],
        "owners": [{"owner": k, **v} for k, v in sorted(owners.items())],
        "queue": [{**_holding(s), "position": i + 1, "waiting": now - s.created} for i, s in enumerate(queued)],
    }
