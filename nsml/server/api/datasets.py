"""Datasets: push (atomic), list, search, files, pull, remove.

Who may read or change one is nsml.core.policy's to say, through nsml.server.access: a private
dataset is visible only to its owner, admins and those it was granted to (others get the same
answer as for a name that does not exist); only its owner or an admin replaces or removes it.
"""

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from nsml.core import naming, scoring
from nsml.core.entities import Dataset
from nsml.core.errors import AlreadyExists, Conflict, Forbidden, InvalidInput, NotFound
from nsml.store.archive import Member, stream_tar

from nsml.core.policy import Action, Actor, can

from ..access import controlled_dataset, readable_dataset, readable_datasets
from ..auth import current_actor
from ..bounds import MAX_TAGS_GIVEN, Name, OptText, Seconds, Text
from ..schemas import TAR_BODY, DatasetPublic, FilePublic
from ..state import state
from ..uploads import forget, receive_tar

router = APIRouter(prefix="/api/datasets", tags=["datasets"])
MAX_TAGS = 7  # NSML's limits: at most 7 tags, each at most 50 characters, starting with '#'
MAX_TAG_LENGTH = 50


def check_tags(tags: list[str]) -> list[str]:
    """Tags as given (duplicates dropped), or a clear error for the first bad one."""
    out: list[str] = []
    for tag in tags:
        if not tag.startswith("#") or len(tag) < 2:
            raise InvalidInput(f"Tag '{tag}' must start with '#' followed by a word, e.g. --tag '#vision' (quote it: the shell reads # as a comment).")
        if len(tag) > MAX_TAG_LENGTH:
            raise InvalidInput(f"Tag '{tag[:20]}…' is {len(tag)} characters long; the limit is {MAX_TAG_LENGTH}.")
        if any(ch.isspace() or ch == "," for ch in tag):
            raise InvalidInput(f"Tag '{tag}' contains a space or a comma; give each tag with its own --tag.")
        if tag not in out:
            out.append(tag)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"{len(out)} tags given; a dataset has at most {MAX_TAGS}.")
    return out


@router.post("/{name}", response_model=DatasetPublic, status_code=201, openapi_extra=TAR_BODY)
async def push_dataset(
    name: str, request: Request, force: bool = False, description: Text = "", private: bool = False,
    leaderboard: bool = False, metric: Name = "", order: Name = "", submit_interval: Seconds = None,
    tag: list[str] | None = Query(default=None, max_length=MAX_TAGS_GIVEN), actor: Actor = Depends(current_actor),
) -> DatasetPublic:
    """Body: an uncompressed tar of the dataset folder. The dataset appears only once every file
    is stored; with force=true it replaces an existing one at that moment, not before.

    `leaderboard` (implied by `metric`): submits are scored on test/ against test/test_label with
    `metric` (accuracy, mse, f1, roc-auc, or custom = the dataset's evaluation.py; without a
    metric, custom when the dataset ships an evaluation.py, else accuracy), ranked by
    `order` (asc or desc; default by metric); `submit_interval`: seconds between one user's
    ranked submits (0: no limit). A forced push without these keeps the old leaderboard settings;
    without `tag` it keeps the old tags."""
    naming.check_dataset_name(name)
    tags = check_tags(tag) if tag is not None else None
    st = state(request)
    user = actor.name
    board = _board_settings(leaderboard, metric, order, submit_interval)
    old = _find(st, name)
    if old is not None:  # refuse before receiving the bytes
        _check_owner(old, actor, "replace")
        if not force:
            raise AlreadyExists(f"Dataset '{name}' already exists; push with -f to replace it.")
    entries, created = await receive_tar(request, st.blobs, f"dataset '{name}'")
    try:
        if not any(e.path.startswith("train/") for e in entries):
            raise InvalidInput(f"Dataset '{name}' has no train/ folder; put the training files under train/.")
        replaced = _find(st, name) if force else None  # read again: it may have changed meanwhile
        if board is not None and not board[0]:  # -l alone: the dataset's own evaluation.py if it ships one
            board = ("custom" if any(e.path == "evaluation.py" for e in entries) else "accuracy", *board[1:])
        if board is None and replaced is not None:
            board = (replaced.metric, replaced.order, replaced.submit_interval)
        metric, order, interval = board or ("", "desc", 0.0)
        if metric:
            check_board_layout(name, {e.path for e in entries}, metric)
        old_shas = st.store.fileset_shas(replaced.fileset_id) if replaced else set()
        dataset = st.store.put_dataset(name, old.owner if old else user, description, private, entries, force, metric, order, interval, tags=tags)
    except BaseException:
        forget(st.blobs, created)
        raise
    st.blobs.delete_unused(old_shas)
    st.prune_dataset_views()
    if replaced is not None and dataset.has_leaderboard:  # a new metric, evaluator or test split
        from .. import rescoring

        rescoring.rescore_later(st, dataset.name)
    return DatasetPublic.of(dataset)


def _board_settings(leaderboard: bool, metric: str, order: str, submit_interval: float | None) -> tuple[str, str, float] | None:
    """(metric, order, interval) asked for, or None when the push says nothing of a leaderboard."""
    if not (leaderboard or metric or order or submit_interval is not None):
        return None
    if not (leaderboard or metric):
        raise InvalidInput("--order and --submit-interval apply to a leaderboard; add --leaderboard (or --metric).")
    try:  # no metric named: custom or accuracy, once the files show whether evaluation.py ships
        named, order = scoring.check_metric(metric or "accuracy", order)  # both rank higher first
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    metric = named if metric else ""
    if submit_interval is not None and submit_interval < 0:
        raise InvalidInput("--submit-interval must be 0 (no limit) or a number of seconds.")
    return metric, order, submit_interval or 0.0


def check_board_layout(name: str, paths: set[str], metric: str) -> None:
    """A leaderboard needs hidden test data and labels, and evaluation.py for a custom metric."""
    if not any(p.startswith("test/") and p.rsplit("/", 1)[-1].startswith("test_label") for p in paths):
        raise InvalidInput(f"Dataset '{name}' cannot have a leaderboard: it has no test/test_label (the hidden labels submits are scored against).")
    if not any(p.startswith("test/") and not p.rsplit("/", 1)[-1].startswith("test_label") for p in paths):
        raise InvalidInput(f"Dataset '{name}' cannot have a leaderboard: test/ has no test data (e.g. test/test_data) besides the labels.")
    if metric == "custom" and "evaluation.py" not in paths:
        raise InvalidInput(f"Dataset '{name}' uses a custom metric but has no evaluation.py at its top level; push it with -e evaluation.py.")


def _find(st, name: str) -> Dataset | None:
    try:
        return st.store.get_dataset(name)
    except NotFound:
        return None


def _check_owner(dataset: Dataset, actor: Actor, action: str) -> None:
    if can(actor, Action.CONTROL, dataset):
        return
    if not can(actor, Action.READ, dataset):
        raise Forbidden(f"The name '{dataset.name}' is taken by another user's private dataset; choose another name.")
    raise Forbidden(f"Dataset '{dataset.name}' belongs to {dataset.owner}; only they (or an admin) can {action} it.")


@router.get("", response_model=list[DatasetPublic])
def list_datasets(request: Request, pattern: OptText = None, actor: Actor = Depends(current_actor)) -> list[DatasetPublic]:
    return [DatasetPublic.of(d) for d in readable_datasets(state(request), actor, pattern)]


@router.get("/{name}", response_model=DatasetPublic)
def get_dataset(dataset: Dataset = Depends(readable_dataset)) -> DatasetPublic:
    return DatasetPublic.of(dataset)


@router.get("/{name}/files", response_model=list[FilePublic])
def dataset_files(request: Request, dataset: Dataset = Depends(readable_dataset)) -> list[FilePublic]:
    return [FilePublic(path=f.path, size=f.size) for f in state(request).store.files(dataset.fileset_id)]


@router.get("/{name}/archive")
def pull_dataset(name: str, request: Request, dataset: Dataset = Depends(readable_dataset),
                 actor: Actor = Depends(current_actor)) -> StreamingResponse:
    st = state(request)
    files = st.store.files(dataset.fileset_id)
    if not can(actor, Action.CONTROL, dataset):  # the hidden test split (labels above all) is its owner's alone
        files = [f for f in files if not f.path.startswith("test/")]
    return tar_response(st, files, f"{name}.tar")


@router.delete("/{name}")
def remove_dataset(name: str, request: Request, force: bool = False, dataset: Dataset = Depends(controlled_dataset),
                   actor: Actor = Depends(current_actor)) -> dict:
    """Remove a dataset (its owner or an admin). One that sessions were run on needs force=true: those
    sessions keep their code, logs and checkpoints, but can no longer be forked or submitted."""
    st = state(request)
    users = st.store.list_sessions(dataset=dataset.name)
    if users and not force:
        n = len(users)
        raise Conflict(
            f"Dataset '{name}' is used by {n} session{'s' if n != 1 else ''} (e.g. {users[-1].name}); "
            f"remove {'them' if n != 1 else 'it'} first, or remove the dataset anyway with nsml dataset rm -f {name}."
        )
    shas = st.store.fileset_shas(dataset.fileset_id)
    st.store.delete_dataset(name)
    st.blobs.delete_unused(shas)
    st.prune_dataset_views()
    st.audit(actor.name, "dataset rm", name, "force" if force else "")
    return {"removed": name}


def attachment(filename: str) -> str:
    """A Content-Disposition any name fits in (a checkpoint may be called "모델" or 'a"b'): an
    ASCII fallback plus the exact name, percent-encoded (RFC 6266); a header holds latin-1 only."""
    from urllib.parse import quote

    plain = "".join(ch if " " <= ch < "\x7f" and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def tar_response(st, files, filename: str) -> StreamingResponse:
    members = [Member(f.path, st.blobs.path(f.sha256), f.size) for f in files]
    return StreamingResponse(
        stream_tar(members), media_type="application/x-tar",
        headers={"Content-Disposition": attachment(filename), "X-NSML-Files": str(len(files)),
                 "X-NSML-Bytes": str(sum(f.size for f in files))},
    )
