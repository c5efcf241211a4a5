"""nsml.store.blobs: content addressing, dedupe, full disks, and deletion that never races uploads."""

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import textwrap
import time

import pytest

from nsml.core.errors import InvalidInput
from nsml.store.blobs import BlobStore
from tests.conftest import REPO


@pytest.fixture(params=["local", "s3"])
def blobs(request, tmp_path):
    """The contract suite: every test here runs on the local folder and on a real S3 server."""
    if request.param == "local":
        return BlobStore(tmp_path / "blobs")
    from nsml.store.s3blobs import S3BlobStore

    server = request.getfixturevalue("s3_env")
    return S3BlobStore(server.url(), tmp_path / "cache")


def stored_files(blobs: BlobStore) -> list[str]:
    return sorted(blobs.all_shas())


def test_put_names_blobs_by_sha256_and_reads_them_back(blobs):
    data = os.urandom(3 * (1 << 20) + 17)  # several chunks
    sha, size = blobs.put_chunks([data[:1000], data[1000:]])
    assert sha == hashlib.sha256(data).hexdigest() and size == len(data)
    assert blobs.path(sha) == blobs.root / sha[:2] / sha[2:]
    assert b"".join(blobs.read_chunks(sha)) == data
    assert blobs.exists(sha)
    assert stat.S_IMODE(blobs.path(sha).stat().st_mode) == 0o444  # immutable: sessions hard-link them


def test_identical_bytes_are_stored_once(blobs, tmp_path):
    created = []
    a = blobs.put_chunks([b"same bytes"], created=created)
    b = blobs.put_chunks([b"same ", b"bytes"], created=created)
    (tmp_path / "f").write_bytes(b"same bytes")
    c = blobs.put_file(tmp_path / "f")
    assert a == b == c
    assert created == [a[0]]  # only the first put created it
    assert stored_files(blobs) == [a[0]]
    assert list(blobs.tmp.iterdir()) == []


def test_empty_blob(blobs):
    sha, size = blobs.put_chunks([])
    assert size == 0 and sha == hashlib.sha256(b"").hexdigest()
    assert blobs.path(sha).read_bytes() == b""


def test_a_failing_source_leaves_no_temporary_file(blobs):
    def chunks():
        yield b"part of it"
        raise InvalidInput("the archive ended early")

    with pytest.raises(InvalidInput):
        blobs.put_chunks(chunks())
    assert list(blobs.tmp.iterdir()) == []
    assert stored_files(blobs) == []


DISK_FULL_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys
    from nsml.core.errors import StorageFull
    from nsml.store.blobs import BlobStore
    blobs = BlobStore(sys.argv[1])
    small = blobs.put_chunks([b"small"])[0]
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # no file may grow past 1 MiB
    out = {"small": small}
    try:
        blobs.put_chunks(iter([os.urandom(256 << 10)] * 8), what="dataset 'big'")
        out["error"] = None
    except StorageFull as exc:
        out["error"] = str(exc)
    out["after"] = blobs.put_chunks([b"still works"])[0]
    print(json.dumps(out))
""")


def test_disk_full_raises_storage_full_and_keeps_nothing(tmp_path):
    """RLIMIT_FSIZE makes writes fail with EFBIG (Python ignores SIGXFSZ): a full disk, safely."""
    root = tmp_path / "blobs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", DISK_FULL_SCRIPT, str(root)], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["error"] == (
        "The server's disk filled up while storing dataset 'big'; nothing was kept. Free some space and try again."
    )
    blobs = BlobStore(root)
    assert stored_files(blobs) == sorted([out["small"], out["after"]])
    assert list(blobs.tmp.iterdir()) == []


def test_delete_unused_respects_pins_and_references(blobs):
    used_by_metadata = set()
    blobs.in_use = lambda shas: shas & used_by_metadata
    lease = blobs.lease()
    pinned, _ = blobs.put_chunks([b"pinned"], lease=lease)
    referenced, _ = blobs.put_chunks([b"referenced"])
    free, _ = blobs.put_chunks([b"free"])
    used_by_metadata.add(referenced)
    assert blobs.delete_unused([pinned, referenced, free]) == [free]
    assert stored_files(blobs) == sorted([pinned, referenced])
    lease.release()
    lease.release()  # idempotent: a second release must not unpin someone else's pin
    assert blobs.pinned() == set()
    blobs.delete(pinned)
    assert stored_files(blobs) == [referenced]


def test_a_blob_found_by_an_upload_is_pinned_too(blobs):
    """An upload that finds its bytes already stored relies on them: they must not vanish."""
    sha, _ = blobs.put_chunks([b"shared"])
    first, second = blobs.lease(), blobs.lease()
    blobs.put_chunks([b"shared"], lease=first)
    blobs.put_chunks([b"shared"], lease=second)
    first.release()
    blobs.delete(sha)
    assert blobs.exists(sha)  # the second upload still holds it
    second.release()
    blobs.delete(sha)
    assert not blobs.exists(sha)


def test_clean_tmp_removes_only_stale_files(blobs):
    old, fresh = blobs.temp_file(".tar"), blobs.temp_file(".tar")
    past = time.time() - 7 * 3600
    os.utime(old, (past, past))
    assert blobs.clean_tmp() == 1
    assert not old.exists() and fresh.exists()


# -- uploads: tar → blobs, taken back on failure ---------------------------------------------
def tar_file(path, files: dict[str, bytes], extra: tarfile.TarInfo | None = None):
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            tar.addfile(extra)
    return path


def test_store_tar_keeps_files_and_takes_back_a_failed_upload(blobs, tmp_path):
    from nsml.server.uploads import store_tar

    blobs.put_chunks([b"old"])  # stored before: a failed upload must not take it away
    good = tar_file(tmp_path / "good.tar", {"train/b": b"bee", "train/a": b"old"})
    entries, created = store_tar(good, blobs, "x")
    assert [(e.path, e.size) for e in entries] == [("train/a", 3), ("train/b", 3)]
    assert created == [hashlib.sha256(b"bee").hexdigest()]

    evil = tarfile.TarInfo("../evil")
    bad = tar_file(tmp_path / "bad.tar", {"train/new": b"brand new", "train/a2": b"old"}, extra=evil)
    before = stored_files(blobs)
    with pytest.raises(InvalidInput, match="outside"):
        store_tar(bad, blobs, "x")
    assert stored_files(blobs) == before
    assert list(blobs.tmp.iterdir()) == []


def test_store_tar_refuses_a_path_that_is_both_file_and_folder(blobs, tmp_path):
    from nsml.server.uploads import store_tar

    bad = tar_file(tmp_path / "bad.tar", {"train/x": b"file", "train/x/y/z": b"below it"})
    with pytest.raises(InvalidInput, match="'train/x' is both a file and a folder"):
        store_tar(bad, blobs, "x")
    assert stored_files(blobs) == []


def test_forget_releases_the_lease_and_spares_what_others_use(blobs, tmp_path):
    from nsml.server.uploads import forget, store_tar

    mine = blobs.lease()
    _, created = store_tar(tar_file(tmp_path / "a.tar", {"f": b"one", "g": b"two"}), blobs, "x", mine)
    other = blobs.lease()
    blobs.put_chunks([b"two"], lease=other)  # a concurrent upload found "two" and counts on it
    forget(blobs, created)
    assert mine.released
    assert stored_files(blobs) == [hashlib.sha256(b"two").hexdigest()]
