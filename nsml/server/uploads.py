"""Receiving folders as tar uploads: body → temporary file → checked entries → blobs.

Nothing is registered until every byte is stored; on any failure (a bad entry, a full disk, a
dropped connection) the blobs this upload added are taken back, so no half dataset remains.
Every blob an upload stored or found stays pinned until its request has ended, so a removal
running at the same time cannot delete a blob the upload is about to register.
"""

from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from nsml.core.entities import FileEntry
from nsml.core.errors import InvalidInput
from nsml.store.archive import read_tar
from nsml.store.blobs import BlobStore, Lease, disk_full_error, is_disk_full

_LEASES = "nsml_blob_leases"  # key in the ASGI scope: the leases of this request


class Created(list):
    """The blob names an upload created, with the lease that pins everything it stored."""

    lease: Lease | None = None


async def receive_tar(request: Request, blobs: BlobStore, what: str) -> tuple[list[FileEntry], Created]:
    """Returns the files of the uploaded tar and the blob names this upload created."""
    tmp = blobs.temp_file(".tar")
    try:
        try:
            with open(tmp, "wb") as out:
                # Writes go to a worker thread: a large push must not stall every other request
                # (log streaming, the supervisors' posts) on the event loop.
                async for chunk in request.stream():
                    await run_in_threadpool(out.write, chunk)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(what) from exc
            raise
        except ClientDisconnect as exc:
            raise InvalidInput(f"The upload of {what} was interrupted; nothing was kept.") from exc
        lease = blobs.lease()
        request.scope.setdefault(_LEASES, []).append(lease)
        return await run_in_threadpool(store_tar, tmp, blobs, what, lease)
    finally:
        tmp.unlink(missing_ok=True)


def store_tar(tar_path: Path, blobs: BlobStore, what: str, lease: Lease | None = None) -> tuple[list[FileEntry], Created]:
    entries: dict[str, FileEntry] = {}
    created = Created()
    created.lease = lease

    def store(rel: str, chunks, size: int) -> None:
        sha, stored = blobs.put_chunks(chunks, what=what, created=created, lease=lease)
        entries[rel] = FileEntry(rel, stored, sha)

    try:
        with open(tar_path, "rb") as f:
            read_tar(f, store)
        check_paths(entries)
    except BaseException:
        forget(blobs, created)
        raise
    return sorted(entries.values(), key=lambda e: e.path), created


def check_paths(entries: dict[str, FileEntry]) -> None:
    """Refuse 'a' and 'a/b' in one upload: they could never be unpacked side by side."""
    folders = {rel.rsplit("/", 1)[0] for rel in entries if "/" in rel}
    folders |= {f.rsplit("/", i)[0] for f in list(folders) for i in range(1, f.count("/") + 1)}
    clash = sorted(folders & entries.keys())
    if clash:
        raise InvalidInput(f"Archive entry '{clash[0]}' is both a file and a folder.")


def forget(blobs: BlobStore, created: list[str]) -> None:
    """Take back the blobs a failed upload created (unless another upload or a file uses them)."""
    lease = getattr(created, "lease", None)
    if lease is not None:
        lease.release()
    blobs.delete_unused(created)


class ReleaseLeases:
    """ASGI middleware: unpin an upload's blobs once its request has been answered, i.e. after
    the endpoint registered them in the metadata (or gave up)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        finally:
            for lease in scope.get(_LEASES, ()):
                lease.release()
