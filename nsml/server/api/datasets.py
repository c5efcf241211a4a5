"""Datasets: push (atomic), list, search, files, pull, remove.

A private dataset is visible only to its owner (others get the same answer as for a name that
does not exist); any dataset can be replaced or removed only by its owner.
"""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from nsml.core import naming
from nsml.core.entities import Dataset
from nsml.core.errors import AlreadyExists, Forbidden, InvalidInput, NotFound, not_found
from nsml.store.archive import Member, stream_tar

from ..auth import current_user
from ..schemas import DatasetPublic, FilePublic
from ..state import state
from ..uploads import forget, receive_tar

router = APIRouter(prefix="/api/datasets", tags=["datasets"])


@router.post("/{name}", response_model=DatasetPublic, status_code=201)
async def push_dataset(
    name: str, request: Request, force: bool = False, description: str = "", private: bool = False,
    user: str = Depends(current_user),
) -> DatasetPublic:
    """Body: an uncompressed tar of the dataset folder. The dataset appears only once every file
    is stored; with force=true it replaces an existing one at that moment, not before."""
    naming.check_dataset_name(name)
    st = state(request)
    old = _find(st, name)
    if old is not None:  # refuse before receiving the bytes
        _check_owner(old, user, "replace")
        if not force:
            raise AlreadyExists(f"Dataset '{name}' already exists; push with -f to replace it.")
    entries, created = await receive_tar(request, st.blobs, f"dataset '{name}'")
    try:
        if not any(e.path.startswith("train/") for e in entries):
            raise InvalidInput(f"Dataset '{name}' has no train/ folder; put the training files under train/.")
        replaced = _find(st, name) if force else None  # read again: it may have changed meanwhile
        old_shas = st.store.fileset_shas(replaced.fileset_id) if replaced else set()
        dataset = st.store.put_dataset(name, user, description, private, entries, force)
    except BaseException:
        forget(st.blobs, created)
        raise
    st.blobs.delete_unused(old_shas)
    st.prune_dataset_views()
    return DatasetPublic.of(dataset)


def _find(st, name: str) -> Dataset | None:
    try:
        return st.store.get_dataset(name)
    except NotFound:
        return None


def _visible(dataset: Dataset, user: str) -> bool:
    return not dataset.private or dataset.owner == user


def _check_owner(dataset: Dataset, user: str, action: str) -> None:
    if dataset.owner == user:
        return
    if not _visible(dataset, user):
        raise Forbidden(f"The name '{dataset.name}' is taken by another user's private dataset; choose another name.")
    raise Forbidden(f"Dataset '{dataset.name}' belongs to {dataset.owner}; only they can {action} it.")


def visible_dataset(st, name: str, user: str) -> Dataset:
    """The dataset, or NotFound (with close names the user may see) when missing or hidden."""
    dataset = _find(st, name)
    if dataset is None or not _visible(dataset, user):
        raise not_found("Dataset", name, [d.name for d in st.store.list_datasets() if _visible(d, user)])
    return dataset


@router.get("", response_model=list[DatasetPublic])
def list_datasets(request: Request, pattern: str | None = None, user: str = Depends(current_user)) -> list[DatasetPublic]:
    return [DatasetPublic.of(d) for d in state(request).store.list_datasets(pattern) if _visible(d, user)]


@router.get("/{name}", response_model=DatasetPublic)
def get_dataset(name: str, request: Request, user: str = Depends(current_user)) -> DatasetPublic:
    return DatasetPublic.of(visible_dataset(state(request), name, user))


@router.get("/{name}/files", response_model=list[FilePublic])
def dataset_files(name: str, request: Request, user: str = Depends(current_user)) -> list[FilePublic]:
    st = state(request)
    return [FilePublic(path=f.path, size=f.size) for f in st.store.files(visible_dataset(st, name, user).fileset_id)]


@router.get("/{name}/archive")
def pull_dataset(name: str, request: Request, user: str = Depends(current_user)) -> StreamingResponse:
    st = state(request)
    files = st.store.files(visible_dataset(st, name, user).fileset_id)
    return tar_response(st, files, f"{name}.tar")


@router.delete("/{name}")
def remove_dataset(name: str, request: Request, user: str = Depends(current_user)) -> dict:
    st = state(request)
    dataset = visible_dataset(st, name, user)
    _check_owner(dataset, user, "remove")
    shas = st.store.fileset_shas(dataset.fileset_id)
    st.store.delete_dataset(name)
    st.blobs.delete_unused(shas)
    st.prune_dataset_views()
    return {"removed": name}


def tar_response(st, files, filename: str) -> StreamingResponse:
    members = [Member(f.path, st.blobs.path(f.sha256), f.size) for f in files]
    return StreamingResponse(
        stream_tar(members), media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "X-NSML-Files": str(len(files)),
                 "X-NSML-Bytes": str(sum(f.size for f in files))},
    )
