"""Content-addressed blob store on a local directory.

A blob's name is the SHA-256 of its bytes, so identical files (the same dataset pushed twice,
a checkpoint saved unchanged) are stored once. Writes go to a temporary file first and are
renamed into place, so a crash or a full disk never leaves a half blob under a real name.

Because blobs are shared, deleting one is only safe when nothing uses it: no file row in the
metadata (the `in_use` hook the server sets) and no upload in progress that stored or found it
but has not registered it yet (a `Lease` pins those). Both are checked under one lock, so a
push of the same bytes racing with the removal of a dataset never loses a blob.
"""

import errno
import hashlib
import os
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from nsml.core.errors import StorageFull

CHUNK = 1 << 20
TMP_MAX_AGE = 6 * 3600  # temporary files untouched this long belong to a crashed upload
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in _DISK_FULL


def disk_full_error(what: str) -> StorageFull:
    return StorageFull(
        f"The server's disk filled up while storing {what}; nothing was kept. Free some space and try again."
    )


class Lease:
    """The blobs one upload stored or found, pinned until it has registered them (or given up)."""

    def __init__(self, store: "BlobStore"):
        self.store = store
        self.shas: list[str] = []
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.store._unpin(self.shas)


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        # Given a set of names, the ones the metadata still refers to; None: only pins protect.
        self.in_use: Callable[[set[str]], set[str]] | None = None
        self._lock = threading.RLock()
        self._pins: Counter[str] = Counter()

    def path(self, sha: str) -> Path:
        """A readable local file holding the blob (the S3 store fetches it into its cache first)."""
        return self._local(sha)

    def _local(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:]

    def exists(self, sha: str) -> bool:
        return self._local(sha).exists()

    # Hooks of a store that keeps blobs elsewhere too (nsml.store.s3blobs): a blob just placed
    # under its name locally, one to remove, and the names there are.
    def _stored(self, sha: str, local: Path) -> None:
        """Called once `local` holds the complete blob `sha` (new or found), the blob pinned."""

    def _remove(self, sha: str) -> None:
        self._local(sha).unlink(missing_ok=True)

    def temp_file(self, suffix: str = "") -> Path:
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    def clean_tmp(self, max_age: float = TMP_MAX_AGE) -> int:
        """Remove temporary files left by uploads that a crash interrupted; returns how many."""
        removed = 0
        limit = time.time() - max_age
        for f in self.tmp.iterdir():
            try:
                if f.stat().st_mtime < limit:
                    f.unlink()
                    removed += 1
            except OSError:
                pass
        return removed

    def lease(self) -> Lease:
        return Lease(self)

    def put_chunks(
        self, chunks: Iterable[bytes], what: str = "a file", created: list[str] | None = None,
        lease: Lease | None = None,
    ) -> tuple[str, int]:
        """Store the concatenated chunks; returns (sha256, size). New blobs are appended to
        `created`, so a caller whose upload fails can take back exactly what it added; with a
        lease, the blob stays pinned (safe from deletion) until the lease is released."""
        digest = hashlib.sha256()
        size = 0
        tmp = self.temp_file()
        try:
            with open(tmp, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            sha = digest.hexdigest()
            final = self._local(sha)
            with self._lock:  # pin and place together, so a concurrent delete sees one or the other
                self._pins[sha] += 1  # held at least until _stored is done, with a lease until it ends
                if lease is not None:
                    self._pins[sha] += 1
                    lease.shas.append(sha)
                if final.exists():
                    tmp.unlink()
                else:
                    final.parent.mkdir(exist_ok=True)
                    os.chmod(tmp, 0o444)  # blobs are immutable; sessions may see them through hard links
                    os.replace(tmp, final)
                    if created is not None:
                        created.append(sha)
            try:
                self._stored(sha, final)  # outside the lock: an upload elsewhere may take a while
            finally:
                self._unpin([sha])
            return sha, size
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise disk_full_error(what) from exc
            raise
        except BaseException:  # a broken archive or a dropped upload while reading chunks
            tmp.unlink(missing_ok=True)
            raise

    def put_file(self, source: Path) -> tuple[str, int]:
        with open(source, "rb") as f:
            return self.put_chunks(iter(lambda: f.read(CHUNK), b""), what=str(source))

    def read_chunks(self, sha: str) -> Iterator[bytes]:
        with open(self.path(sha), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, sha: str) -> None:
        """Delete a blob unless an upload pins it or the metadata still refers to it."""
        self.delete_unused([sha])

    def delete_unused(self, shas: Iterable[str]) -> list[str]:
        """Delete those of shas nothing uses (see the module docstring); returns the deleted ones."""
        with self._lock:
            candidates = {s for s in shas if not self._pins[s]}
            if candidates and self.in_use is not None:
                candidates -= self.in_use(candidates)
            for sha in candidates:
                self._remove(sha)
            return sorted(candidates)

    def _unpin(self, shas: Iterable[str]) -> None:
        with self._lock:
            for sha in shas:
                self._pins[sha] -= 1
                if self._pins[sha] <= 0:
                    del self._pins[sha]

    def pinned(self) -> set[str]:
        with self._lock:
            return set(self._pins)

    def sweep(self, batch: int = 1000) -> int:
        """Delete blobs that nothing refers to (left by a server killed mid-upload); returns how
        many. Works in batches so uploads running meanwhile wait on the lock only briefly."""
        removed, shas = 0, []
        for sha in self.all_shas():
            shas.append(sha)
            if len(shas) == batch:
                removed += len(self.delete_unused(shas))
                shas = []
        return removed + len(self.delete_unused(shas))

    def all_shas(self) -> Iterator[str]:
        for sub in self.root.iterdir():
            if len(sub.name) == 2 and sub.is_dir():
                for f in sub.iterdir():
                    yield sub.name + f.name
