"""The runs table: the sessions the caller may read as rows, chosen parameters and metric
summaries (last, min or max of a series) as columns, sorted and paged in the database
(nsml.store.sql.runs). The web's runs table (issue 14) reads this."""

import json
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from nsml.core import params as p
from nsml.core import query as runs_query
from nsml.core.params import Value
from nsml.core.policy import Actor, session_scope
from nsml.core.states import SUBMIT_KINDS

from ..auth import current_actor
from ..bounds import MAX_INT
from ..state import state
from .sessions import TOTAL_HEADER

router = APIRouter(prefix="/api/runs", tags=["runs"])
MAX_PAGE = 1000


class RunPublic(BaseModel):
    id: int
    name: str
    status: str
    created: float
    params: dict[str, Value]  # every parameter column asked for; null where the session has none
    metrics: dict[str, dict[str, float | None]]  # {key: {agg: value}} of every metric column asked for
    tags: list[str]


class RunsPage(BaseModel):
    total: int
    offset: int
    limit: int
    sort: str
    order: str
    params: list[str]
    metrics: list[str]  # the metric columns as KEY:AGG
    q: str  # the query the rows answer ('' for all)
    rows: list[RunPublic]



@router.get("", response_model=RunsPage, responses={
    200: {"headers": {TOTAL_HEADER: {"description": "How many sessions the table has, whatever the page.",
                                     "schema": {"type": "integer"}}}},
    400: {"description": "A column, sort or order that does not exist, in words."}})
def runs_table(
    request: Request,
    param: list[str] = Query(default=[], max_length=p.MAX_COLUMNS, description="A parameter column (repeat for more)."),
    metric: list[str] = Query(default=[], max_length=p.MAX_COLUMNS,
                              description="A metric column, KEY:last, KEY:min or KEY:max (KEY alone: last)."),
    sort: str = Query("created", max_length=p.MAX_COLUMN_KEY + 16,
                      description="A session field (id, name, status, created, started, ended), param:KEY or metric:KEY:AGG."),
    order: str = Query("desc", max_length=16, description="asc or desc; sessions without the value come last either way."),
    limit: int = Query(50, ge=0, le=MAX_PAGE), offset: int = Query(0, ge=0, le=MAX_INT),
    q: str = Query("", max_length=runs_query.MAX_QUERY,
                   description="A runs query, e.g. `lr < 0.01 and val/acc >= 0.95` (docs/web.md, Queries)."),
    detail: bool = Query(False, description="Add each row's `session` (kind, lineage, memo, arguments, queue place, zombie GPUs): what the web table shows."),
    actor: Actor = Depends(current_actor),
) -> Response:
    """The sessions the caller may read (the listing's rule, nsml.core.policy), one page of
    them sorted by `sort`. Metric values come from each series' summary kept up to date at
    ingest, never from its points, so a page costs the same at 10 or 10,000 sessions."""
    metric_columns = [p.metric_column(m) for m in metric]
    sort_column = p.parse_sort(sort)
    p.check_order(order)
    tree = runs_query.parse(q) if q else None  # a QueryError is a 400 that points at the bad token
    total, rows = state(request).store.runs_table(
        params=param, metrics=[(c.key, c.agg) for c in metric_columns], sort=sort_column, order=order,
        limit=limit, offset=offset, scope=session_scope(actor), where_tree=tree)
    body: dict[str, Any] = {
        "total": total, "offset": offset, "limit": limit, "sort": sort_column.spec, "order": order,
        "params": list(dict.fromkeys(param)), "metrics": list(dict.fromkeys(f"{c.key}:{c.agg}" for c in metric_columns)),
        "q": q, "rows": [{"id": r.id, "name": r.name, "status": r.status, "created": r.created, "params": r.params,
                          "metrics": r.metrics, "tags": r.tags} for r in rows],
    }
    if detail:
        _add_details(state(request), body["rows"])
    # Plain values straight to JSON (RunsPage documents the shape): FastAPI's path would build
    # and validate a model a row, then dump them to dicts again, for up to 1000 x 200 cells.
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json",
                    headers={TOTAL_HEADER: str(total)})


DETAIL_FIELDS = ("owner", "dataset", "number", "args", "memo", "kind", "source", "source_checkpoint", "started", "ended",
                 "exit_code", "summary", "gpus", "node", "queue_position", "queue_reason", "zombie", "attempt", "visibility")


def _add_details(st, rows: list[dict[str, Any]]) -> None:
    """Each row's `session`: the fields of the session listing (nsml.server.scheduling.public,
    so a queued one has its place and reason, a running one its zombie GPUs) the web shows."""
    from .. import scheduling

    found = st.store.sessions_by_ids([r["id"] for r in rows])
    public = {s.name: s for s in scheduling.public(st, list(found.values()))}
    submit_ids = [s.id for s in found.values() if s.kind in SUBMIT_KINDS]
    scored = {x.runner_id: x for x in st.store.submissions_of(runner_ids=submit_ids)}
    for r in rows:
        s = public.get(r["name"])
        r["session"] = {k: getattr(s, k) for k in DETAIL_FIELDS} if s else None
        x = scored.get(r["id"])
        if r["session"] is not None and x is not None:  # a submit's lineage: its checkpoint's score
            r["session"]["submission"] = {"status": x.status.value, "score": x.score, "test": x.test}


class RunKey(BaseModel):
    key: str
    sessions: int  # how many of the sessions have it
    values: int | None = None  # parameters: how many distinct values (as written) they have


class RunKeys(BaseModel):
    params: list[RunKey]
    metrics: list[RunKey]
    summary: list[str]  # the summary metric keys (report(summary=True)) of the newest sessions
    q: str


@router.get("/keys", response_model=RunKeys, responses={400: {"description": "A query that does not parse, in words."}})
def runs_keys(
    request: Request,
    q: str = Query("", max_length=runs_query.MAX_QUERY, description="Only the sessions this runs query selects."),
    limit: int = Query(500, ge=1, le=1000, description="At most this many parameter and metric keys each."),
    actor: Actor = Depends(current_actor),
) -> dict[str, Any]:
    """The parameter and metric keys present among the sessions the caller may read (and `q`
    selects), most common first: the runs table's column picker, and its default columns."""
    tree = runs_query.parse(q) if q else None
    found = state(request).store.runs_keys(scope=session_scope(actor), where_tree=tree, limit=limit)
    return {"params": [{"key": k, "sessions": n, "values": v} for k, n, v in found["params"]],
            "metrics": [{"key": k, "sessions": n} for k, n in found["metrics"]],
            "summary": found["summary"], "q": q}
