"""What the S3 blob store adds to the local store's contract (tests/store/test_blobs.py runs that
on both): blobs live in the bucket, the local folder is only a cache, uploads are whole objects
or nothing, and a bucket that is missing or refuses the keys is one clear error."""

import hashlib
import os

import pytest

from nsml.core.errors import InvalidInput
from nsml.store.s3blobs import MULTIPART_BYTES, S3BlobStore, open_blobs, parse_url


def objects(server, url: str) -> list[str]:
    bucket, prefix = parse_url(url)
    listing = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"].removeprefix(prefix) for o in listing.get("Contents", []))


def test_blobs_are_in_the_bucket_and_a_fresh_cache_reads_them_back(s3_env, tmp_path):
    url = s3_env.url()
    data = os.urandom(MULTIPART_BYTES + 12345)  # above the multipart threshold: sent in parts
    first = S3BlobStore(url, tmp_path / "one")
    sha, size = first.put_chunks(data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20))
    assert size == len(data) and objects(s3_env, url) == [f"blobs/{sha}"]
    other = S3BlobStore(url, tmp_path / "two")  # a second server, or this one with its cache gone
    assert other.exists(sha) and not other._local(sha).exists()
    assert hashlib.sha256(other.path(sha).read_bytes()).hexdigest() == sha  # fetched into its cache
    assert list(other.all_shas()) == [sha]
    created = []
    assert other.put_chunks([data], created=created) == (sha, size) and created == []  # not sent again
    assert other.delete_unused([sha]) == [sha]
    assert objects(s3_env, url) == [] and not other._local(sha).exists()


def test_deleting_removes_the_object_and_the_cached_copy(s3_env, tmp_path):
    url = s3_env.url()
    blobs = S3BlobStore(url, tmp_path / "cache")
    sha, _ = blobs.put_chunks([b"checkpoint bytes"])
    assert blobs._local(sha).exists()
    blobs.delete_unused([sha])
    assert objects(s3_env, url) == [] and not blobs._local(sha).exists() and not blobs.exists(sha)


def test_a_failing_source_sends_nothing_to_the_bucket(s3_env, tmp_path):
    url = s3_env.url()
    blobs = S3BlobStore(url, tmp_path / "cache")

    def broken():
        yield b"half of it"
        raise OSError("the client went away")

    with pytest.raises(OSError):
        blobs.put_chunks(broken())
    assert objects(s3_env, url) == [] and list(blobs.tmp.iterdir()) == []


def test_wrong_keys_or_a_missing_bucket_are_one_clear_error(s3_env, tmp_path, monkeypatch):
    with pytest.raises(InvalidInput, match="The bucket 'no-such-bucket' does not exist at http://127.0.0.1:"):
        S3BlobStore("s3://no-such-bucket", tmp_path / "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(InvalidInput, match="refused access .*check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        S3BlobStore(s3_env.url(), tmp_path / "b")


@pytest.mark.parametrize("location", ["s3://", "s3:///x", "/some/folder", "gs://bucket"])
def test_a_location_that_is_not_s3_is_refused(location, tmp_path):
    with pytest.raises(InvalidInput):
        open_blobs(location, tmp_path)


def test_urls_and_prefixes():
    assert parse_url("s3://b") == ("b", "") and parse_url("s3://b/lab/nsml/") == ("b", "lab/nsml/")
