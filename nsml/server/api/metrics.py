"""A session's metrics as stored: its keys and whole series (the dashboard's downsampled charts are web.py's)."""

from fastapi import APIRouter, Depends, Request

from nsml.core.entities import Session

from ..access import readable_session
from ..bounds import SessionNumber
from ..schemas import finite
from ..state import state

router = APIRouter(prefix="/api/sessions", tags=["metrics"])
SESSION = "/{owner}/{dataset}/{number}"


@router.get(SESSION + "/metrics")
def list_metrics(owner: str, dataset: str, number: SessionNumber, request: Request, session: Session = Depends(readable_session)) -> dict[str, int]:
    """Metric keys of the session with their number of points."""
    return state(request).store.series_keys(session.id)


@router.get(SESSION + "/metrics/{key:path}")
def metric_series(owner: str, dataset: str, number: SessionNumber, key: str, request: Request, session: Session = Depends(readable_session)) -> dict:
    points = state(request).store.metric_points(session.id, key)
    return {
        "key": key,
        "steps": [p.step for p in points],
        "walltimes": [p.walltime for p in points],
        "values": [finite({"v": p.value})["v"] for p in points],
    }
