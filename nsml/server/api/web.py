"""JSON twins of the dashboard pages: session search, overlaid graphs, session info, code diffs.

Every page of nsml/server/web fetches one of these (or a plain API endpoint), so anything the
dashboard shows can also be read by a script.
"""

import gzip
import math
import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from nsml.core.entities import Session
from nsml.core.errors import InvalidInput
from nsml.core.policy import Action, Actor, can, session_scope
from nsml.core.states import Status

from .. import scheduling
from ..access import readable_session, session_for
from ..auth import current_actor
from ..bounds import MAX_INT, MAX_ITEMS, Finite, Name, OptName, SessionNumber, Text
from ..state import ServerState, state
from nsml.scheduler.usage import zombie_gpus
from ..web.compare import args_rows, parse_args, side_by_side, split_args, text_lines

router = APIRouter(prefix="/api/web", tags=["web"])
SESSION = "/sessions/{owner}/{dataset}/{number}"
MAX_GRAPH_SESSIONS = 100
GZIP_ABOVE = 64 << 10  # bytes; smaller graph answers go as they are
MAX_USAGE_POINTS = 1500


@router.get("/sessions")
def search_sessions(
    request: Request, q: Text = "", dataset: OptName = None, status: list[str] = Query(default=[], max_length=MAX_ITEMS),
    owner: OptName = None, offset: int = Query(0, ge=0, le=MAX_INT), limit: int = Query(50, ge=1, le=500),
    actor: Actor = Depends(current_actor),
) -> dict[str, Any]:
    """Sessions whose name, memo or arguments contain q, newest first, one page at a time."""
    try:
        statuses = {Status(s) for s in status} or None
    except ValueError as exc:
        raise InvalidInput(f"Unknown status in {status}; use {', '.join(s.value for s in Status)}.") from exc
    st = state(request)
    total, page = st.store.search_sessions(
        q=q, dataset=dataset or None, statuses=statuses, owner=owner or None, offset=offset, limit=limit,
        scope=session_scope(actor))
    return {"total": total, "offset": offset, "limit": limit, "sessions": scheduling.public(st, page)}


def _session(st: ServerState, actor: Actor, name: str) -> Session:
    return session_for(st, actor, name.strip().strip("/"))


def _brief(s: Session) -> dict[str, Any]:
    return {
        "name": s.name, "status": s.status.value, "args": s.args, "params": parse_args(s.args),
        "created": s.created, "started": s.started, "ended": s.ended, "memo": s.memo,
    }


def _compact_x(values: np.ndarray, axis: str) -> np.ndarray | list:
    """Steps as integers where they are whole (a third of the bytes of repr(float)); relative
    times to the millisecond (a difference of two walltimes has noise digits a chart cannot
    show); walltimes as stored."""
    if axis == "step":
        with np.errstate(invalid="ignore"):
            whole = values.astype(np.int64)
        if np.array_equal(whole, values):
            return whole
        return [int(v) if v.is_integer() else v for v in values.tolist()]
    return np.round(values, 3) if axis == "relative" else values


@router.get("/graph")
def graph(
    request: Request, s: list[str] = Query(default=[], max_length=MAX_ITEMS), x: Name = "step", xmin: Finite = None,
    xmax: Finite = None, buckets: int = Query(500, ge=10, le=5000), key: list[str] = Query(default=[], max_length=MAX_ITEMS),
    actor: Actor = Depends(current_actor),
) -> Response:
    """Series of several sessions for an overlaid chart, each downsampled on the server to at
    most `buckets` points within [xmin, xmax] (per-interval min and max), so a million-step run costs what the chart
    can show. Sessions that no longer exist are listed under "missing" instead of failing the
    whole view (a shared link outlives a removed session)."""
    if x not in ("step", "walltime", "relative"):
        raise InvalidInput(f"x must be step, walltime or relative, not {x!r}.")
    if len(s) > MAX_GRAPH_SESSIONS:
        raise InvalidInput(f"{len(s)} sessions is too many for one graph; choose at most {MAX_GRAPH_SESSIONS}.")
    st = state(request)
    names = [name.strip().strip("/") for name in dict.fromkeys(s)]
    known = st.store.sessions_named(names)  # one query for them all, not one a name
    found, missing = [], []
    for asked, name in zip(dict.fromkeys(s), names):
        sess = known.get(name)
        if sess is not None and can(actor, Action.READ, sess):
            found.append(sess)
        else:
            missing.append(asked)  # one the caller may not read is "missing" too
    keys_by_id = st.store.keys_of_sessions([f.id for f in found]) if found else {}
    wanted = set(key)
    pairs = [(sess, k) for sess in found for k in keys_by_id.get(sess.id, [])
             if not wanted or k in wanted or k.split("@", 1)[0] in wanted]
    # All the series at once: a fixed number of queries and one numpy pass, however many.
    lines = st.store.downsampled_many([(sess.id, k) for sess, k in pairs], x=x, xmin=xmin, xmax=xmax, buckets=buckets)
    series: dict[str, dict[str, Any]] = {sess.name: {} for sess in found}
    for (sess, k), d in zip(pairs, lines):
        # y exactly as stored (finite: the store leaves out what is not a number).
        series[sess.name][k] = {"x": _compact_x(d["x"], x), "y": d["y"], "count": d["count"], "exact": d["exact"]}
    # Typed parameters (defaults included: nsml.config and argparse capture) and tags, for
    # grouping lines by a parameter or a tag; one query each for all the sessions.
    ids = [f.id for f in found]
    config, tags = (st.store.session_params(ids), st.store.session_tags(ids)) if ids else ({}, {})
    briefs = [{**_brief(f), "config": config.get(f.id, {}), "tags": tags.get(f.id, [])} for f in found]
    payload = {
        "x": x, "xmin": xmin, "xmax": xmax, "buckets": buckets, "missing": missing,
        "sessions": briefs, "keys": sorted({k for v in series.values() for k in v}),
        "args": split_args([b["params"] for b in briefs]), "series": series,
    }
    # Encoded here, by orjson, which writes numpy columns in C: FastAPI's generic encoder (or
    # json.dumps of lists) walks every number of every series, tens of ms for a large overlay.
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if len(body) > GZIP_ABOVE and "gzip" in request.headers.get("accept-encoding", ""):
        # Numbers compress ~2.5x; level 1 costs a few ms per MB (browsers always accept gzip).
        return Response(gzip.compress(body, compresslevel=1), media_type="application/json",
                        headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
    return Response(body, media_type="application/json", headers={"Vary": "Accept-Encoding"})


@router.get(SESSION + "/info")
def session_info(owner: str, dataset: str, number: SessionNumber, request: Request, sess: Session = Depends(readable_session)) -> dict[str, Any]:
    """Everything the Info tab shows: the session, its status history, its resource usage over
    time (CPU, memory, per GPU) and which GPUs look idle ("zombie")."""
    st = state(request)
    samples = st.store.usage(sess.id, 0.0)
    stride = max(1, math.ceil(len(samples) / MAX_USAGE_POINTS))
    # Every run's end summary stays, whatever the stride (it is the one figure for the whole
    # run), and so does the newest sample (a running session's now).
    shown = [u for i, u in enumerate(samples) if i % stride == 0 or u.final or i == len(samples) - 1]
    gpus: dict[str, dict[str, list]] = {}
    for sample in shown:
        for g in sample.gpus:
            entry = gpus.setdefault(str(g.get("index")), {"at": [], "util": [], "memory": []})
            entry["at"].append(sample.at)
            entry["util"].append(g.get("util"))
            entry["memory"].append(g.get("memory"))
    return {
        "session": scheduling.public(st, [sess])[0],
        "params": parse_args(sess.args),
        "events": [{"at": e.at, "status": e.status, "note": e.note} for e in st.store.session_events(sess.id)],
        "usage": {"at": [u.at for u in shown], "cpu": [u.cpu for u in shown], "memory": [u.memory for u in shown], "gpus": gpus,
                  "final": [u.final for u in shown]},
        "zombie": zombie_gpus(samples, st.settings.zombie_after, time.time()) if sess.status == Status.RUNNING else [],
        "checkpoints": len(st.store.list_checkpoints(sess.id)),
    }


@router.get("/diff")
def diff(request: Request, a: Name, b: Name, context: int = Query(3, ge=0, le=50), actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    """Side-by-side diff of two sessions' uploaded code (file by file) and of their arguments."""
    st = state(request)
    left, right = _session(st, actor, a), _session(st, actor, b)
    lfiles = {f.path: f for f in st.store.files(left.code_fileset_id)} if left.code_fileset_id else {}
    rfiles = {f.path: f for f in st.store.files(right.code_fileset_id)} if right.code_fileset_id else {}
    files = []
    for path in sorted(lfiles.keys() | rfiles.keys()):
        lf, rf = lfiles.get(path), rfiles.get(path)
        if lf and rf and lf.sha256 == rf.sha256:
            files.append({"path": path, "status": "same", "rows": [], "size": lf.size})
            continue
        status = "changed" if lf and rf else ("removed" if lf else "added")
        llines = _read_lines(st, lf) if lf else []
        rlines = _read_lines(st, rf) if rf else []
        if llines is None or rlines is None:
            files.append({"path": path, "status": status, "binary": True, "rows": [], "size": (rf or lf).size})
            continue
        files.append({"path": path, "status": status, "rows": side_by_side(llines, rlines, context), "size": (rf or lf).size})
    counts = {k: sum(1 for f in files if f["status"] == k) for k in ("changed", "added", "removed", "same")}
    return {
        "a": _brief(left), "b": _brief(right), "files": files, "counts": counts,
        "args": args_rows(parse_args(left.args), parse_args(right.args)),
        "entry": {"a": left.entry, "b": right.entry},
    }


def _read_lines(st: ServerState, f) -> list[str] | None:
    with open(st.blobs.path(f.sha256), "rb") as fh:
        return text_lines(fh.read(f.size + 1))
