"""AutoML studies (issue 16; spec §2.7, §6): start one, list them, see one with its trials, stop
it, remove it with its trials, rank its trials' models. A study is named by its parent session,
so the policy that guards sessions guards studies (readable_session / controlled_session)."""

import json
import math
import secrets
import time

from fastapi import APIRouter, Depends, Request

from nsml.core.automl_config import parse_config
from nsml.core.automl_measure import measure_at_saves
from nsml.core.entities import Session, Study
from nsml.core.errors import InvalidInput, NotFound
from nsml.core.policy import DEFAULT_VISIBILITY, Action, Actor, can, check_visibility, session_scope
from nsml.core.states import ACTIVE, SessionKind
from nsml.scheduler import admission
from nsml.scheduler.environments import read_first_line_image

from ..access import controlled_session, dataset_for, readable_session
from ..auth import current_actor
from ..automl import service
from ..bounds import Count, Memo, Name, SessionNumber
from ..schemas import TAR_BODY, Removed, StudyDetail, StudyPublic, TrialModel, TrialPublic
from ..state import ServerState, state
from ..uploads import forget, receive_tar
from .sessions import _remove, session_team

router = APIRouter(prefix="/api/automl", tags=["automl"])
STUDY = "/{owner}/{dataset}/{number}"
CONFIG_MEMBER = ".nsml-automl.json"  # the study's config, sent inside the code's tar by `nsml automl run`
MAX_CONFIG = 256 * 1024


@router.post("", response_model=StudyPublic, status_code=201, openapi_extra=TAR_BODY)
async def start_study(request: Request, memo: Memo = "", team: Name = "", visibility: Name = DEFAULT_VISIBILITY,
                      priority: Name = "normal", seed: Count = None, actor: Actor = Depends(current_actor)) -> StudyPublic:
    """Body: an uncompressed tar of the code folder holding the study's config as JSON at
    `.nsml-automl.json` (what `nsml automl run -c CONFIG` sends; YAML is read by the CLI). The
    parent session starts at once; its trials are queued as ordinary sessions, `population` at
    a time. A config that does not fit is refused with one line before anything runs."""
    st = state(request)
    check_visibility(visibility)
    team = session_team(st, actor, team.strip())
    rank = admission.priority_of(priority, actor.admin)
    files, created = await receive_tar(request, st.blobs, "the code")
    try:
        raw = _take_config(st, files)
        config = parse_config(raw)
        if config.dataset:
            dataset_for(st, actor, config.dataset)  # a clear "did you mean" before anything runs
        code = [f for f in files if f.path != CONFIG_MEMBER]
        image = read_first_line_image({f.path: st.blobs.path(f.sha256) for f in code})
        parent, study = service.start_study(st, actor.name, team, visibility, rank, raw, code, image, memo,
                                            seed if seed is not None else secrets.randbelow(2**31))
    except BaseException:
        forget(st.blobs, created)
        raise
    st.audit(actor.name, "automl run", parent.name)
    return study_public(st, parent, study)


def _take_config(st: ServerState, files) -> dict:
    member = next((f for f in files if f.path == CONFIG_MEMBER), None)
    if member is None:
        raise InvalidInput(f"The upload has no {CONFIG_MEMBER}: start a study with nsml automl run -c CONFIG.")
    if member.size > MAX_CONFIG:
        raise InvalidInput(f"The AutoML config is larger than {MAX_CONFIG // 1024} KB.")
    try:
        return json.loads(st.blobs.path(member.sha256).read_text())
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"The AutoML config is not JSON: {exc}.") from None


@router.get("", response_model=list[StudyPublic])
def list_studies(request: Request, all: bool = False, dataset: Name = "", last: Count = None, actor: Actor = Depends(current_actor)) -> list[StudyPublic]:
    """`nsml automl ps`: the studies one may read, newest first; running ones only unless `all`."""
    st = state(request)
    parents = [s for s in st.store.list_sessions(dataset=dataset or None, scope=session_scope(actor), kinds={SessionKind.AUTOML},
                                                 statuses=None if all else set(ACTIVE))
               if can(actor, Action.READ, s)]
    out = []
    for parent in parents:
        try:
            out.append(study_public(st, parent, st.store.study_of_session(parent.id)))
        except NotFound:  # its study row is being written
            continue
        if last is not None and len(out) >= last:
            break
    return out


@router.get(STUDY, response_model=StudyDetail)
def get_study(owner: str, dataset: str, number: SessionNumber, request: Request,
              parent: Session = Depends(readable_session), actor: Actor = Depends(current_actor)) -> StudyDetail:
    st = state(request)
    study = study_of(st, parent)
    trials = []
    for t in st.store.trials(study.id):
        child = _child(st, t.session_id)
        if child is not None and not can(actor, Action.READ, child):
            child = None
        trials.append(TrialPublic(number=t.number, params=t.params, state=t.state, value=t.value,
                                  steps={str(k): v for k, v in sorted(t.steps.items())}, parent=t.parent, created=t.created,
                                  session=child.name if child else "", session_status=child.status.value if child else "",
                                  last_values=child.last_values if child else {}))
    return StudyDetail(**study_public(st, parent, study).model_dump(), config=study.config, seed=study.seed, trials=trials)


@router.post(STUDY + "/stop", response_model=StudyPublic)
def stop_study(owner: str, dataset: str, number: SessionNumber, request: Request, force: bool = False,
               parent: Session = Depends(controlled_session), actor: Actor = Depends(current_actor)) -> StudyPublic:
    """`nsml automl stop`: no new trials; the parent ends once its running trials have. `force`
    (-f): they are stopped now."""
    st = state(request)
    study = service.stop_study(st, study_of(st, parent), force, actor.name)
    st.audit(actor.name, "automl stop", parent.name, "force" if force else "")
    return study_public(st, st.store.session_by_id(parent.id), study)


@router.delete(STUDY, response_model=Removed)
def remove_study(owner: str, dataset: str, number: SessionNumber, request: Request,
                 parent: Session = Depends(controlled_session), actor: Actor = Depends(current_actor)) -> Removed:
    """`nsml automl rm`: the study, its parent and every trial's session (running ones killed)."""
    st = state(request)
    study_of(st, parent)
    children = [c.name for c in service.trial_sessions(st, parent)]
    _remove(st, st.store.session_by_id(parent.id))  # and its trials' sessions with it
    st.audit(actor.name, "automl rm", parent.name, f"{len(children)} trials")
    return Removed(removed=[parent.name, *children])


@router.get(STUDY + "/rank", response_model=list[TrialModel])
def rank_models(owner: str, dataset: str, number: SessionNumber, request: Request, measure: Name = "",
                count: Count = 5, order: Name = "", parent: Session = Depends(readable_session),
                actor: Actor = Depends(current_actor)) -> list[TrialModel]:
    """`nsml automl rank`: each trial's best saved model by `measure` (the study's unless given),
    one per session, best first, `count` of them."""
    st = state(request)
    study = study_of(st, parent)
    config = parse_config(study.config)
    key = (measure.strip() or config.measure).replace("__", "/")
    order = order.strip() or ("descending" if config.direction == "maximize" else "ascending")
    if order not in ("ascending", "descending"):
        raise InvalidInput(f"--order is ascending or descending, not {order!r}.")
    best = []
    for t in st.store.trials(study.id):
        child = _child(st, t.session_id)
        if child is None or not can(actor, Action.READ, child):
            continue
        saves = [(c, measure_at_saves([c.summary], key)) for c in st.store.list_checkpoints(child.id)]
        saves = [(c, v[0]) for c, v in saves if v]
        if saves:
            c, v = (max if order == "descending" else min)(saves, key=lambda cv: cv[1])
            best.append(TrialModel(trial=t.number, session=child.name, checkpoint=c.name, value=v, params=t.params))
    best.sort(key=lambda m: m.value, reverse=order == "descending")
    return best[: count if count is not None else 5]


def study_of(st: ServerState, parent: Session) -> Study:
    try:
        return st.store.study_of_session(parent.id)
    except NotFound:
        raise NotFound(f"Session {parent.name} is not an AutoML session; see nsml automl ps.") from None


def _child(st: ServerState, session_id: int | None) -> Session | None:
    if session_id is None:
        return None
    try:
        return st.store.session_by_id(session_id)
    except NotFound:
        return None


def study_public(st: ServerState, parent: Session, study: Study) -> StudyPublic:
    config = parse_config(study.config)
    trials = st.store.trials(study.id)
    states = {k: sum(t.state == k for t in trials) for k in ("running", "complete", "pruned", "fail")}
    values = [t for t in trials if t.value is not None and math.isfinite(t.value) and t.state == "complete"]
    best = (max if config.direction == "maximize" else min)(values, key=lambda t: t.value) if values else None
    return StudyPublic(name=parent.name, status=parent.status.value, study_status=study.status, memo=parent.memo,
                       error=parent.error, created=parent.created, ended=parent.ended, owner=parent.owner,
                       dataset=parent.dataset, measure=config.measure, order="descending" if config.direction == "maximize" else "ascending",
                       algorithm=config.algorithm, scheduler=config.scheduler, population=config.population,
                       max_trials=config.max_trials, trial_count=len(trials), **states,
                       best_value=best.value if best else None, best_trial=best.number if best else None,
                       elapsed=(parent.ended or time.time()) - parent.created)
