"""Datasets: push (atomic), list, search, files, pull, remove."""

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from nsml.core import naming
from nsml.core.errors import AlreadyExists, InvalidInput, NotFound
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
    if not force and _exists(st, name):  # refuse before receiving the bytes
        raise AlreadyExists(f"Dataset '{name}' already exists; push with -f to replace it.")
    entries, created = await receive_tar(request, st.blobs, f"dataset '{name}'")
    try:
        if not any(e.path.startswith("train/") for e in entries):
            raise InvalidInput(f"Dataset '{name}' has no train/ folder; put the training files under train/.")
        old = _dataset_shas(st, name) if force else set()
        dataset = st.store.put_dataset(name, user, description, private, entries, force)
    except BaseException:
        forget(st.blobs, created)
        raise
    st.gc_blobs(old)
    return DatasetPublic.of(dataset)


def _exists(st, name: str) -> bool:
    try:
        st.store.get_dataset(name)
        return True
    except NotFound:
        return False


def _dataset_shas(st, name: str) -> set[str]:
    if not _exists(st, name):
        return set()
    return {f.sha256 for f in st.store.files(st.store.get_dataset(name).fileset_id)}


@router.get("", response_model=list[DatasetPublic])
def list_datasets(request: Request, pattern: str | None = None, _user: str = Depends(current_user)) -> list[DatasetPublic]:
    return [DatasetPublic.of(d) for d in state(request).store.list_datasets(pattern)]


@router.get("/{name}", response_model=DatasetPublic)
def get_dataset(name: str, request: Request, _user: str = Depends(current_user)) -> DatasetPublic:
    return DatasetPublic.of(state(request).store.get_dataset(name))


@router.get("/{name}/files", response_model=list[FilePublic])
def dataset_files(name: str, request: Request, _user: str = Depends(current_user)) -> list[FilePublic]:
    st = state(request)
    return [FilePublic(path=f.path, size=f.size) for f in st.store.files(st.store.get_dataset(name).fileset_id)]


@router.get("/{name}/archive")
def pull_dataset(name: str, request: Request, _user: str = Depends(current_user)) -> StreamingResponse:
    st = state(request)
    files = st.store.files(st.store.get_dataset(name).fileset_id)
    return tar_response(st, files, f"{name}.tar")


@router.delete("/{name}")
def remove_dataset(name: str, request: Request, _user: str = Depends(current_user)) -> dict:
    st = state(request)
    shas = _dataset_shas(st, name)
    st.store.delete_dataset(name)
    st.gc_blobs(shas)
    return {"removed": name}


def tar_response(st, files, filename: str) -> StreamingResponse:
    members = [Member(f.path, st.blobs.path(f.sha256), f.size) for f in files]
    return StreamingResponse(
        stream_tar(members), media_type="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "X-NSML-Files": str(len(files)),
                 "X-NSML-Bytes": str(sum(f.size for f in files))},
    )
