"""Leaderboards: a dataset's ranked submissions, its submissions, and its leaderboard settings."""

from fastapi import APIRouter, Depends, Query, Request

from nsml.core import scoring
from nsml.core.errors import InvalidInput

from .. import rescoring
from nsml.core.entities import Dataset

from ..access import controlled_dataset, readable_dataset
from ..auth import current_user
from ..schemas import ArchivedRowPublic, BoardPublic, BoardRowPublic, DatasetChange, DatasetPublic, SubmissionPublic
from ..state import state
from .datasets import check_board_layout, check_tags

router = APIRouter(prefix="/api/datasets", tags=["leaderboards"])


@router.get("/{name}/board", response_model=BoardPublic)
def board(name: str, request: Request, all: bool = False, dataset: Dataset = Depends(readable_dataset)) -> BoardPublic:
    """Ranked scores: each owner's best submission (ties: the earlier), or with `all` every one.
    `count` is the owner's number of ranked submissions; `submit -t` runs are never ranked."""
    st = state(request)
    if not dataset.has_leaderboard:
        raise InvalidInput(f"Dataset '{name}' has no leaderboard; its owner can add one with nsml dataset change --metric accuracy {name}.")
    key = rescoring.current_key(st, dataset)
    rows = st.store.board(dataset.name, dataset.order, every=all, scoring=key)
    pending, archived = 0, []
    for s in st.store.scored_otherwise(dataset.name, key):
        why = rescoring.standing(st, s, key)
        if why == rescoring.PENDING:
            pending += 1
        else:
            archived.append(ArchivedRowPublic(owner=s.owner, score=s.score, scored_with=scoring.key_metric(s.scoring), reason=why,
                                              session=s.session, checkpoint=s.checkpoint, created=s.created))
    if pending:  # also picks up a pass a server restart cut short
        rescoring.rescore_later(st, dataset.name)
    listed = {s.name for s in st.store.list_sessions(dataset=dataset.name)}  # a removed one is not linked
    return BoardPublic(dataset=dataset.name, metric=dataset.metric, order=dataset.order, all=all,
                       rows=[BoardRowPublic(**r.__dict__, removed=r.session not in listed) for r in rows],
                       rescoring=pending, archived=archived)


@router.get("/{name}/submissions", response_model=list[SubmissionPublic])
def submissions(name: str, request: Request, mine: bool = False, limit: int = Query(100, ge=1, le=1000), dataset: Dataset = Depends(readable_dataset),
                user: str = Depends(current_user)) -> list[SubmissionPublic]:
    """Recent submissions to the dataset, newest first, test runs and failures included."""
    st = state(request)
    return [SubmissionPublic.of(s) for s in st.store.list_submissions(dataset.name, user if mine else None, min(limit, 1000))]


@router.patch("/{name}", response_model=DatasetPublic)
def change(name: str, body: DatasetChange, request: Request, dataset: Dataset = Depends(controlled_dataset)) -> DatasetPublic:
    """Change a dataset's description or leaderboard settings (its owner or an admin); metric ''
    removes the leaderboard (its submissions are kept)."""
    st = state(request)
    fields = {}
    if body.description is not None:
        fields["description"] = body.description
    if body.metric is not None or body.order is not None:
        metric = dataset.metric if body.metric is None else body.metric
        if metric:
            try:
                metric, order = scoring.check_metric(metric, body.order or (dataset.order if body.metric is None else ""))
            except ValueError as exc:
                raise InvalidInput(str(exc)) from None
            check_board_layout(name, {f.path for f in st.store.files(dataset.fileset_id)}, metric)
            fields.update(metric=metric, order=order)
        else:
            fields["metric"] = ""
    if body.tags is not None:
        fields["tags"] = check_tags(body.tags)
    if body.submit_interval is not None:
        if body.submit_interval < 0:
            raise InvalidInput("submit_interval must be 0 (no limit) or a number of seconds.")
        fields["submit_interval"] = body.submit_interval
    changed = st.store.change_dataset(dataset.name, **fields)
    if changed.has_leaderboard:  # a new metric: the kept predictions are scored again
        rescoring.rescore_later(st, changed.name)
    return DatasetPublic.of(changed)
