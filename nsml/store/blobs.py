"""Content-addressed blob store on a local directory.

A blob's name is the SHA-256 of its bytes, so identical files (the same dataset pushed twice,
a checkpoint saved unchanged) are stored once. Writes go to a temporary file first and are
renamed into place, so a crash or a full disk never leaves a half blob under a real name.
"""

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from nsml.core.errors import StorageFull

CHUNK = 1 << 20
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in _DISK_FULL


def disk_full_error(what: str) -> StorageFull:
    return StorageFull(
        f"The server's disk filled up while storing {what}; nothing was kept. Free some space and try again."
    )


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha[2:]

    def exists(self, sha: str) -> bool:
        return self.path(sha).exists()

    def temp_file(self, suffix: str = "") -> Path:
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    def put_chunks(self, chunks: Iterable[bytes], what: str = "a file", created: list[str] | None = None) -> tuple[str, int]:
        """Store the concatenated chunks; returns (sha256, size). New blobs are appended to
        `created`, so a caller whose upload fails can take back exactly what it added."""
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
            final = self.path(sha)
            if final.exists():
                tmp.unlink()
            else:
                final.parent.mkdir(exist_ok=True)
                os.chmod(tmp, 0o444)  # blobs are immutable; sessions may see them through hard links
                os.replace(tmp, final)
                if created is not None:
                    created.append(sha)
            return sha, size
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise disk_full_error(what) from exc
            raise

    def put_file(self, source: Path) -> tuple[str, int]:
        with open(source, "rb") as f:
            return self.put_chunks(iter(lambda: f.read(CHUNK), b""), what=str(source))

    def read_chunks(self, sha: str) -> Iterator[bytes]:
        with open(self.path(sha), "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, sha: str) -> None:
        self.path(sha).unlink(missing_ok=True)

    def all_shas(self) -> Iterator[str]:
        for sub in self.root.iterdir():
            if len(sub.name) == 2 and sub.is_dir():
                for f in sub.iterdir():
                    yield sub.name + f.name
