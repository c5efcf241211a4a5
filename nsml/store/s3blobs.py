"""The blob store in an S3-compatible bucket (`nsml server --blobs s3://BUCKET[/PREFIX]`), behind
the local store's interface (nsml.store.blobs.BlobStore), through boto3.

The bucket holds every blob, as PREFIX/blobs/<sha256>; a local folder is a read-through cache of
them, because sessions get their code and datasets as files (hard links into a read-only view)
and archives are streamed from files. So:

- an upload is written to a local temporary file while its sha is computed (never whole in
  memory), then sent to the bucket as one object (multipart for large ones, by boto3's transfer
  manager, which streams from the file); an object appears under its name only once complete,
  so a half-written blob is never referenced;
- identical bytes are stored once: an object already in the bucket is not sent again;
- `path(sha)` fetches a blob missing from the cache into it (streamed to a temporary file, then
  renamed into place);
- deleting removes the object and the cached copy; the pins and the metadata's `in_use` check
  of the local store decide what may be deleted, as before.

Endpoint and credentials come from the environment as for any AWS client: `AWS_ENDPOINT_URL`
(e.g. http://127.0.0.1:8333 for a SeaweedFS or MinIO server), `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_REGION` (default us-east-1). boto3 is imported only here.
"""

import os
import threading
from collections.abc import Iterator
from pathlib import Path

from nsml.core.errors import InvalidInput, NotFound

from .blobs import BlobStore, disk_full_error, is_disk_full

MULTIPART_BYTES = 64 << 20  # objects above this go up in parts of this size


def parse_url(url: str) -> tuple[str, str]:
    """s3://bucket/some/prefix -> ('bucket', 'some/prefix/')."""
    if not url.startswith("s3://") or not url[5:].split("/", 1)[0]:
        raise InvalidInput(f"'{url}' is not an S3 location; write it like s3://bucket or s3://bucket/prefix.")
    bucket, _, prefix = url[5:].partition("/")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class S3BlobStore(BlobStore):
    def __init__(self, url: str, cache: Path):
        super().__init__(cache)
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.bucket, self.prefix = parse_url(url)
        self.url = url
        # A session of its own: boto3's default one keeps the credentials it first found.
        self.s3 = boto3.session.Session().client("s3", region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                               config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        self.transfer = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
        self._fetching = threading.Lock()
        self._check_bucket()

    def _check_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("404", "NoSuchBucket"):
                raise InvalidInput(f"The bucket '{self.bucket}' does not exist at {self._endpoint()}; create it first.") from None
            raise InvalidInput(f"The bucket '{self.bucket}' at {self._endpoint()} refused access ({code or exc}); "
                               "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.") from None
        except BotoCoreError as exc:
            raise InvalidInput(f"Cannot reach the object store at {self._endpoint()}: {exc}") from None

    def _endpoint(self) -> str:
        return self.s3.meta.endpoint_url

    def key(self, sha: str) -> str:
        return f"{self.prefix}blobs/{sha}"

    def _in_bucket(self, sha: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key(sha))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    # -- the local store's hooks -------------------------------------------------------------
    def exists(self, sha: str) -> bool:
        return self._local(sha).exists() or self._in_bucket(sha)

    def _stored(self, sha: str, local: Path) -> None:
        if not self._in_bucket(sha):
            self.s3.upload_file(str(local), self.bucket, self.key(sha), Config=self.transfer)

    def _remove(self, sha: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=self.key(sha))
        super()._remove(sha)

    def path(self, sha: str) -> Path:
        local = self._local(sha)
        if not local.exists():
            self._fetch(sha, local)
        return local

    def all_shas(self) -> Iterator[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{self.prefix}blobs/")
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"].rsplit("/", 1)[1]

    def _fetch(self, sha: str, local: Path) -> None:
        from botocore.exceptions import ClientError

        tmp = self.temp_file()
        try:
            try:
                self.s3.download_file(self.bucket, self.key(sha), str(tmp), Config=self.transfer)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    raise NotFound(f"Blob {sha[:12]}… is not in the bucket {self.bucket}.") from None
                raise
            os.chmod(tmp, 0o444)
            local.parent.mkdir(exist_ok=True)
            os.replace(tmp, local)  # another fetch of the same blob may have won: same bytes
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(f"a copy of blob {sha[:12]}…") from exc
            raise
        finally:
            tmp.unlink(missing_ok=True)


def open_blobs(location: str | None, home: Path) -> BlobStore:
    """The blob store a server uses: a folder (default NSML_HOME/blobs) or an S3 bucket, whose
    local cache is NSML_HOME/blobs."""
    if location and location.startswith("s3://"):
        return S3BlobStore(location, home / "blobs")
    if location:
        raise InvalidInput(f"--blobs takes s3://BUCKET[/PREFIX] (the default is a folder in the NSML home), not '{location}'.")
    return BlobStore(home / "blobs")

