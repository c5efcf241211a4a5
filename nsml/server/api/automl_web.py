"""JSON twins of the AutoML pages (issue 16's visual analytics): everything the study page, the
studies list and the study comparison draw comes from one of these, so a script reads what a
person sees. A study is named by its parent session, so the session policy guards it: reading
needs `readable_session` (a study one may not read is a 404, as its session is), re-running
needs `controlled_session` (its owner, or an admin). The computations are in
nsml.server.automl.analytics; this module reads the store and shapes nothing itself.

The studies list's twin is GET /api/automl?all=true (nsml.server.api.automl)."""

import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from nsml.core.automl_config import MAX_PARAMS, parse_config
from nsml.core.entities import Session, Study, Trial
from nsml.core.errors import InvalidInput, NotFound
from nsml.core.policy import Action, Actor, can
from nsml.core.states import SessionKind

from ..access import controlled_session, dataset_for, readable_session, session_for
from ..auth import current_actor
from ..automl import analytics, service
from ..bounds import MAX_ITEMS, MAX_MEMO, Name, SessionNumber
from ..schemas import StudyPublic
from ..state import ServerState, state
from .automl import study_public, study_of
from .sessions import session_team

router = APIRouter(prefix="/api/web/automl", tags=["web"])
STUDY = "/{owner}/{dataset}/{number}"
MAX_COMPARED = 8  # studies on one compare page
MAX_CHOICES = 1000  # values of one brushed categorical parameter


class Rerun(BaseModel):
    """The brushed space: {name: [low, high]} for a numeric parameter (its own units, not the
    log10 the axis shows), {name: [choice, ...]} for a categorical one; a parameter left out
    keeps the parent's range."""

    model_config = ConfigDict(extra="forbid")
    ranges: dict[str, list[float | int | bool | str]] = Field(max_length=MAX_PARAMS)
    memo: str = Field(default="", max_length=MAX_MEMO)


# -- reading a study ------------------------------------------------------------------------------

def _children(st: ServerState, actor: Actor, study: Study) -> list[tuple[Trial, Session | None]]:
    """The study's trials, each with its child session where the caller may read it (a child
    one may not read adds nothing: its name and times stay hidden, as on GET /api/automl/...)."""
    out = []
    for t in st.store.trials(study.id):
        child = None
        if t.session_id is not None:
            try:
                child = st.store.session_by_id(t.session_id)
            except NotFound:
                child = None
        out.append((t, child if child is not None and can(actor, Action.READ, child) else None))
    return out


def _row(t: Trial, child: Session | None) -> analytics.TrialRow:
    return analytics.TrialRow(
        number=t.number, params=t.params, state=t.state, value=t.value, steps=dict(t.steps), parent=t.parent,
        created=t.created, started=child.started if child else None, ended=child.ended if child else None,
        session=child.name if child else "", session_status=child.status.value if child else "")


def _rows(st: ServerState, actor: Actor, study: Study) -> list[analytics.TrialRow]:
    return [_row(t, child) for t, child in _children(st, actor, study)]


def _trial_json(t: analytics.TrialRow, last_values: dict) -> dict[str, Any]:
    return {"number": t.number, "params": t.params, "state": t.state, "value": t.value,
            "steps": {str(k): v for k, v in sorted(t.steps.items())}, "parent": t.parent, "created": t.created,
            "started": t.started, "ended": t.ended, "session": t.session, "session_status": t.session_status,
            "last_values": last_values}


def _named_study(st: ServerState, actor: Actor, name: str) -> tuple[Session, Study]:
    parent = session_for(st, actor, name.strip().strip("/"))
    if parent.kind != SessionKind.AUTOML:
        raise NotFound(f"Session {parent.name} is not an AutoML session; see nsml automl ps.")
    return parent, study_of(st, parent)


@router.get(STUDY)
def study_view(owner: str, dataset: str, number: SessionNumber, request: Request,
               parent: Session = Depends(readable_session), actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    """The study page's data in one answer: `study` (as GET /api/automl/OWNER/DATASET/N, with
    its config and `controllable`: whether the caller may stop or re-run it), `trials` (with
    their child sessions' start and end), `history` (value and best so far per trial),
    `edf`, `intermediate` (the measure at each compare step), `timeline`, `axes` (the parallel
    coordinates' parameter axes, ordered by |Pearson r| with the measure; log-scale ones in
    log10), `slices` and `lineage` (PBT's parent links, with the playback's frames).
    Importance and contour have endpoints of their own (they cost more)."""
    st = state(request)
    study = study_of(st, parent)
    config = parse_config(study.config)
    children = _children(st, actor, study)
    rows = [_row(t, child) for t, child in children]
    last = {t.number: child.last_values for t, child in children if child is not None}  # the table's metric columns
    now = time.time()
    header = study_public(st, parent, study).model_dump()
    return {
        "study": {**header, "config": study.config, "seed": study.seed, "direction": config.direction,
                  "controllable": can(actor, Action.CONTROL, parent)},
        "trials": [_trial_json(t, last.get(t.number, {})) for t in sorted(rows, key=lambda t: t.number)],
        "history": analytics.history(rows, config.direction),
        "edf": analytics.edf(rows),
        "intermediate": analytics.intermediate(rows),
        "timeline": analytics.timeline(rows, now),
        "axes": analytics.axes(config, rows),
        "slices": analytics.slices(config, rows),
        "lineage": analytics.lineage(rows, now),
        "now": now,
    }


@router.get(STUDY + "/importance")
def importance(owner: str, dataset: str, number: SessionNumber, request: Request, method: Name = "fanova",
               parent: Session = Depends(readable_session), actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    """Hyperparameter importance of the study's complete trials by Optuna's evaluators:
    `method` fanova (FanovaImportanceEvaluator) or ped_anova (PedAnovaImportanceEvaluator).
    {method, label, trials, importances: [{name, importance}] of every parameter, largest first,
    summing to about 1; note}: with fewer than 2 complete trials, none and a note why."""
    st = state(request)
    study = study_of(st, parent)
    return analytics.importance(parse_config(study.config), _rows(st, actor, study), method.strip(), seed=study.seed)


@router.get(STUDY + "/contour")
def contour(owner: str, dataset: str, number: SessionNumber, request: Request, x: Name = "", y: Name = "",
            parent: Session = Depends(readable_session), actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    """Parameters `x` and `y` (default: the two most correlated with the measure) against the
    measure: the complete trials as points and an interpolated surface (`grid`: x, y, z; null
    with fewer than 3 distinct points), in axis units (log10 for a log-scale parameter, a
    choice's index for a categorical one). A study of one parameter has none: a `note` says so."""
    st = state(request)
    study = study_of(st, parent)
    config = parse_config(study.config)
    rows = _rows(st, actor, study)
    names = [o["name"] for o in analytics.order(config, rows)]
    if len(names) < 2:  # nothing to draw, which is no error of the caller's
        return {"x": None, "y": None, "points": [], "grid": None, "note": "A contour needs two parameters; this study has one."}
    x = x.strip() or names[0]
    y = y.strip() or next(n for n in names if n != x)
    return analytics.contour(config, rows, x, y)


@router.post(STUDY + "/rerun/config")
def rerun_preview(owner: str, dataset: str, number: SessionNumber, body: Rerun, request: Request,
                  parent: Session = Depends(readable_session)) -> dict[str, Any]:
    """The config a re-run with the brushed `ranges` would start (changes nothing): {config},
    for download; refused with one line where the brush leaves no space."""
    study = study_of(state(request), parent)
    return {"config": analytics.rerun_config(study.config, _checked_ranges(body), body.memo)}


@router.post(STUDY + "/rerun", response_model=StudyPublic, status_code=201)
def rerun(owner: str, dataset: str, number: SessionNumber, body: Rerun, request: Request,
          parent: Session = Depends(controlled_session), actor: Actor = Depends(current_actor)) -> StudyPublic:
    """"Re-run with this space": a new study of the caller's with the parent's code and config,
    each brushed parameter narrowed to its brush (`ranges`, as for rerun/config), started now.
    Its memo says where it came from unless `memo` is given."""
    st = state(request)
    study = study_of(st, parent)
    ranges = _checked_ranges(body)
    raw = analytics.rerun_config(study.config, ranges, body.memo or f"re-run of {parent.name} narrowed on {', '.join(ranges)}")
    new_parent, new_study = restart_with_config(st, actor, parent, raw)
    st.audit(actor.name, "automl rerun", new_parent.name, f"from {parent.name}")
    return study_public(st, new_parent, new_study)


def _checked_ranges(body: Rerun) -> dict[str, list]:
    for name, values in body.ranges.items():
        if len(values) > MAX_CHOICES:
            raise InvalidInput(f"The brush on {name} lists {len(values)} values; at most {MAX_CHOICES}.")
    return body.ranges


def restart_with_config(st: ServerState, actor: Actor, parent: Session, raw_config: dict) -> tuple[Session, Study]:
    """A new study of `actor`'s from `raw_config`, with the code of `parent` (the same files,
    so the entry and its imports are what the first study ran), the parent's visibility and
    priority, in its team when the actor is in it; through service.start_study, so it is
    checked as `nsml automl run` is."""
    config = parse_config(raw_config)
    if config.dataset:
        dataset_for(st, actor, config.dataset)
    team = parent.team if parent.team and (parent.team in actor.teams or actor.admin) else ""
    files = st.store.files(parent.code_fileset_id)
    return service.start_study(st, actor.name, session_team(st, actor, team), parent.visibility, parent.priority, raw_config,
                               files, parent.image, str(raw_config.get("memo", "")), secrets.randbelow(2**31))


# -- several studies --------------------------------------------------------------------------------

def _compared(st: ServerState, actor: Actor, names: list[str]) -> list[tuple[Session, Study]]:
    names = list(dict.fromkeys(n.strip().strip("/") for n in names if n.strip()))
    if not names:
        raise InvalidInput("Name the studies to compare: s=OWNER/DATASET/N, once for each.")
    if len(names) > MAX_COMPARED:
        raise InvalidInput(f"{len(names)} studies is too many to compare; choose at most {MAX_COMPARED}.")
    return [_named_study(st, actor, n) for n in names]


@router.get("/compare")
def compare(request: Request, s: list[str] = Query(default=[], max_length=MAX_ITEMS),
            actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    """Several studies side by side (s=NAME, repeated, at most 8): each study's header, trials,
    history (best so far) and EDF; `params`: the parameters they all have (the shared parallel
    coordinates' axes, with each study's trials in axis units); `mergeable`: whether their
    measures agree, so their trials can be taken as one set (compare/importance)."""
    st = state(request)
    studies = _compared(st, actor, s)
    out, configs = [], []
    for parent, study in studies:
        config = parse_config(study.config)
        rows = _rows(st, actor, study)
        configs.append((parent.name, study.config))
        axes = {a["key"]: a for a in analytics.axes(config, rows)}
        out.append({"study": {**study_public(st, parent, study).model_dump(), "direction": config.direction},
                    "trials": [_trial_json(t, {}) for t in sorted(rows, key=lambda t: t.number)],
                    "history": analytics.history(rows, config.direction), "edf": analytics.edf(rows), "axes": axes})
    try:
        merged = analytics.merged_config(configs)
        params, mergeable, why = list(merged["h_params"]), True, ""
    except InvalidInput as exc:
        first = parse_config(configs[0][1])
        params = [p.name for p in first.h_params if all(p.name in o["axes"] for o in out)]
        mergeable, why = False, str(exc)
    return {"studies": out, "params": params, "mergeable": mergeable, "why_not": why}


@router.get("/compare/importance")
def compare_importance(request: Request, s: list[str] = Query(default=[], max_length=MAX_ITEMS), method: Name = "fanova",
                       actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    """The trials of several studies taken as one set ("merge": two searches of one task), and
    the importance of the parameters they share by Optuna's `method` (fanova or ped_anova), as
    for one study; refused where their measures differ or they share no parameter."""
    st = state(request)
    studies = _compared(st, actor, s)
    raw = analytics.merged_config([(p.name, study.config) for p, study in studies])
    rows = [r for _, study in studies for r in _rows(st, actor, study)]
    return analytics.importance(parse_config(raw), rows, method.strip())
