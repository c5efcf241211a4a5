"""Health, identity and the machine's resources."""

from typing import Any

from fastapi import APIRouter, Depends, Request

from nsml import __version__
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


@router.get("/resources")
def resources(request: Request, _user: str = Depends(current_user)) -> dict[str, Any]:
    st = state(request)
    running = st.store.list_sessions({Status.RUNNING})
    queued = st.store.list_sessions({Status.QUEUED})
    used_cpus = sum(s.resources.cpus for s in running)
    return {
        "capacity": {"cpus": st.capacity.cpus, "memory": st.capacity.memory, "gpus": st.capacity.gpus},
        "used": {
            "cpus": used_cpus,
            "memory": sum(s.resources.memory for s in running),
            "gpus": sum(s.resources.gpus for s in running),
        },
        "gpus": [{"index": g.index, "name": g.name, "memory": g.memory} for g in st.gpus],
        "running": [s.name for s in running],
        "queued": [s.name for s in queued],
    }
