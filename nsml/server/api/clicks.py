"""Usability analytics (opt-in: nsml server --usage-analytics): the dashboard posts what pages
and controls are used (nsml.core.clicks: kinds of page and named controls only, never a URL,
a name or a value), and the admins read a summary. Nothing leaves the server."""

import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from nsml.core import clicks
from nsml.core.errors import NotFound
from nsml.core.policy import Actor, require_admin

from ..auth import current_actor
from ..state import state


router = APIRouter(prefix="/api/web", tags=["web"])
KEEP_DAYS = 90  # events older than this are deleted when new ones come
FORGET_EVERY = 3600.0  # seconds between two such deletions (per server process)
_last_forget = 0.0


class UiEvent(BaseModel):
    page: str = Field(max_length=16, description=f"One of {', '.join(clicks.PAGES)}.")
    action: str = Field(max_length=64, description="view, leave (with ms on the page) or click:NAME.")
    ms: int | None = Field(None, ge=0, le=clicks.MAX_MS)


class UiEvents(BaseModel):
    events: list[UiEvent] = Field(max_length=clicks.MAX_EVENTS)


def _enabled(request: Request) -> None:
    if not state(request).settings.usage_analytics:
        raise NotFound("Usability analytics are off on this server (nsml server --usage-analytics turns them on).")


@router.post("/events", status_code=204, response_class=Response)
def record_events(body: UiEvents, request: Request, actor: Actor = Depends(current_actor)) -> Response:
    """Record the caller's dashboard events; 404 while the server has not opted in."""
    _enabled(request)
    checked = clicks.check_events(e.model_dump() for e in body.events)
    st = state(request)
    now = time.time()
    st.store.add_ui_events(actor.name, now, checked)
    global _last_forget
    if now - _last_forget > FORGET_EVERY:  # old events go now and then, not on every post
        _last_forget = now
        st.store.forget_ui_events(now - KEEP_DAYS * 86400)
    return Response(status_code=204)


@router.get("/usability")
def usability(request: Request, days: float = Query(30, gt=0, le=KEEP_DAYS),
              actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    """The summary of the last `days` days (admins only): views and time per page, the most
    used controls, page-to-page moves and moves straight back."""
    _enabled(request)
    require_admin(actor, "read the usability analytics")
    summary = clicks.summarise(state(request).store.ui_events(time.time() - days * 86400))
    return {"days": days, **summary}
