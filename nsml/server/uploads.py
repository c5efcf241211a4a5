"""Receiving folders as tar uploads: body → temporary file → checked entries → blobs.

Nothing is registered until every byte is stored; on any failure (a bad entry, a full disk, a
dropped connection) the blobs this upload added are taken back, so no half dataset remains.
"""

from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from nsml.core.entities import FileEntry
from nsml.core.errors import InvalidInput
from nsml.store.archive import read_tar
from nsml.store.blobs import BlobStore, disk_full_error, is_disk_full


async def receive_tar(request: Request, blobs: BlobStore, what: str) -> tuple[list[FileEntry], list[str]]:
    """Returns the files of the uploaded tar and the blob names this upload created."""
    tmp = blobs.temp_file(".tar")
    try:
        try:
            with open(tmp, "wb") as out:
                async for chunk in request.stream():
                    out.write(chunk)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(what) from exc
            raise
        except ClientDisconnect as exc:
            raise InvalidInput(f"The upload of {what} was interrupted; nothing was kept.") from exc
        return await run_in_threadpool(store_tar, tmp, blobs, what)
    finally:
        tmp.unlink(missing_ok=True)


def store_tar(tar_path: Path, blobs: BlobStore, what: str) -> tuple[list[FileEntry], list[str]]:
    entries: dict[str, FileEntry] = {}
    created: list[str] = []

    def store(rel: str, chunks, size: int) -> None:
        sha, stored = blobs.put_chunks(chunks, what=what, created=created)
        entries[rel] = FileEntry(rel, stored, sha)

    try:
        with open(tar_path, "rb") as f:
            read_tar(f, store)
    except BaseException:
        forget(blobs, created)
        raise
    return sorted(entries.values(), key=lambda e: e.path), created


def forget(blobs: BlobStore, created: list[str]) -> None:
    for sha in created:
        blobs.delete(sha)
