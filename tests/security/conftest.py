"""What the attack suite shares: a real server (made a process-group leader, as a server started
from a shell is, so that a forged pid file could name its group), secrets for hostile sessions
to look for, a plain TCP service on the host's loopback, and helpers to read what the platform
kept of a session (its log and output files) and to find a session's processes on the host.

A hostile session (tests/security/attacks/) gets `targets.json` beside its code: what an attacker
could learn or guess (paths, ports, pids) and, to recognise a secret without being handed it,
its sha256 and size. The tests then look for the secrets' bytes in everything the platform
holds for the session, not only for the scripts' own `ATTACK-OK` lines.
"""

import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nsml.scheduler import bwrap
from tests.conftest import Cli, Server, clean_env, kill_leftover_supervisors

ATTACKS = Path(__file__).parent / "attacks"
MODE = bwrap.probe()
ROOT = os.geteuid() == 0
needs_sandbox = pytest.mark.skipif(not MODE.sandboxed, reason=f"no session sandbox on this machine: {MODE.detail}")
needs_root = pytest.mark.skipif(not ROOT, reason="needs root: the platform must run as root to own files a session may not read")
WAIT_S = 120


class LeaderServer(Server):
    """A Server whose process leads its own process group and session (setsid), as one started
    from a shell does: then `kill -9 -PID` of its pid, which a forged user.pid asks for, hits."""

    def start(self, timeout: float = 30) -> "LeaderServer":
        wrapper = self.home.parent / "setsid-python"
        if not wrapper.exists():
            self.home.parent.mkdir(parents=True, exist_ok=True)
            # setsid execs in place (a Popen child is no group leader), so the pid stays the server's.
            wrapper.write_text(f'#!/bin/sh\nexec setsid {sys.executable} "$@"\n')
            wrapper.chmod(0o755)
        self.python = str(wrapper)
        return super().start(timeout)

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return self.api.get("/api/health", timeout=10).status_code < 500
        except Exception:  # noqa: BLE001 - any failure to answer means not alive
            return False


def start_server(folder: Path, *extra: str, env: dict | None = None) -> LeaderServer:
    return LeaderServer(folder / "home", extra=list(extra), env=env or {}).start()


def stop_server(srv: Server) -> None:
    srv.stop()
    kill_leftover_supervisors(srv.home)


class Listener:
    """A plain TCP service on the host (as PostgreSQL, Ray or an object store would be), on
    127.0.0.1 or on every address ("0.0.0.0", as a team server's services often listen): it
    records every connection it accepts, which must stay none."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[tuple] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, addr = self.sock.accept()
            except OSError:
                return
            self.accepted.append(addr)
            conn.close()

    def close(self) -> None:
        self.sock.close()


class UnixTrap:
    """A Unix socket of root's, in a 0700 folder no session can see: it records every
    connection and answers like a loaded model would, so a confused deputy that connects to it
    on a session's word shows up (TRAPPED in the answer, a count here)."""

    def __init__(self, folder: Path):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = folder / "s"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(8)
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                try:
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(b'{"output": ["TRAPPED"]}\n')
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@dataclass
class Secrets:
    """Files outside every session that no session may read (or, for `rootfile`, write)."""

    folder: Path
    secret: Path = field(init=False)       # root-owned, 0600
    rootfile: Path = field(init=False)     # root-owned, 0644: readable, never writable
    secret_text: str = field(init=False)
    rootfile_bytes: bytes = field(init=False)

    def __post_init__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self.secret_text = f"ROOT-SECRET-{secrets.token_hex(16)}\n"
        self.secret = self.folder / "root-secret"
        # Big enough that a log shipper reading "the rest of output.log" from its offset gets it.
        self.secret.write_text(self.secret_text * 2000)
        self.secret.chmod(0o600)
        self.rootfile = self.folder / "root-file"
        self.rootfile_bytes = f"root's own file {secrets.token_hex(8)}\n".encode()
        self.rootfile.write_bytes(self.rootfile_bytes)
        self.rootfile.chmod(0o644)

    def targets(self) -> dict:
        data = self.secret.read_bytes()
        return {"secret_path": str(self.secret), "secret_sha": sha(data), "secret_size": len(data),
                "rootfile_path": str(self.rootfile), "rootfile_sha": sha(self.rootfile_bytes)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def host_addresses() -> list[str]:
    """Every address of this host an attacker could try besides loopback (slirp4netns's
    10.0.2.2 is its alias for the host)."""
    found = {"127.0.0.1", "localhost", "127.0.1.1", "::1", "10.0.2.2", "10.0.2.3"}
    try:
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[2] in ("inet", "inet6"):
                addr = parts[3].split("/")[0]
                if not addr.startswith("fe80"):
                    found.add(addr)
    except (OSError, subprocess.SubprocessError):
        pass
    return sorted(found)


def hostile_project(folder: Path, targets: dict) -> Path:
    """A copy of the attack scripts with `targets.json` beside them, ready for `nsml run`."""
    shutil.copytree(ATTACKS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "targets.json").write_text(json.dumps(targets))
    return folder


def started(cli: Cli, project: Path, *args: str) -> str:
    out = cli("run", *args, cwd=project).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("Session ")][-1]
    assert line.endswith(" is started"), out
    return line.split()[1]


def logs(srv: Server, name: str) -> str:
    return srv.api.get(f"/api/sessions/{name}/logs").json()["text"]


def wait_log(srv: Server, name: str, text: str, timeout: float = WAIT_S) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = logs(srv, name)
        if text in got:
            return got
        if srv.session(name).get("status") in ("exited", "failed", "stopped"):
            raise AssertionError(f"{name} ended before printing {text!r}: {srv.session(name)}\n{logs(srv, name)}")
        time.sleep(0.1)
    raise AssertionError(f"{name} never printed {text!r}:\n{logs(srv, name)}")


def outputs(cli: Cli, name: str, folder: Path) -> bytes:
    """Every byte of the files the session wrote, as the platform keeps them for its owner."""
    proc = cli("download", name, folder, check=False)
    if proc.returncode != 0:
        return b""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def checkpoint_bytes(srv: Server, name: str) -> bytes:
    import io

    out = b""
    for ckpt in srv.api.get(f"/api/sessions/{name}/checkpoints").json():
        resp = srv.api.get(f"/api/sessions/{name}/checkpoints/{ckpt['name']}/archive")
        if resp.status_code == 200:
            with tarfile.open(fileobj=io.BytesIO(resp.content)) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        out += tar.extractfile(member).read()
    return out


def attack_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("ATTACK-OK")]


def assert_held(text: str, *families: str) -> None:
    """Every family ran to its end and no attack got through."""
    for family in families:
        assert f"DONE {family}" in text, f"the {family} attacks did not run to their end:\n{text[-3000:]}"
    succeeded = attack_lines(text)
    assert not succeeded, "attacks that got through:\n" + "\n".join(succeeded)


def assert_absent(haystack: bytes | str, what: str, *needles: bytes | str) -> None:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    for needle in needles:
        raw = needle.encode() if isinstance(needle, str) else needle
        assert raw not in data, f"{what} holds {raw[:60]!r}"


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds `marker`."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    out.append(int(entry.name))
            except OSError:
                pass
    return sorted(out)


def host_spool(srv: Server, name: str, marker: str) -> Path:
    """Where a running session's spool is on the host: bubblewrap's `--bind SPOOL /run/nsml`,
    else the user process's NSML_SPOOL, else the run directory's spec.json."""
    for pid in processes_with(marker):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for i in range(len(args) - 2):
            if args[i] == b"--bind" and args[i + 2] == bwrap.SPOOL.encode():
                return Path(args[i + 1].decode())
        try:
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                if item.startswith(b"NSML_SPOOL=") and not item.endswith(bwrap.SPOOL.encode()):
                    return Path(item.split(b"=", 1)[1].decode())
        except OSError:
            pass
    for spec in (srv.home / "runs").glob("*/spec.json"):
        if json.loads(spec.read_text()).get("session") == name:
            return spec.parent / "spool"
    raise AssertionError(f"no spool found for {name}")


def kill_marked(marker: str) -> None:
    """Ends what a failed protection left behind (by pid, only processes carrying `marker`)."""
    for pid in processes_with(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture(scope="module")
def listener():
    service = Listener()
    yield service
    service.close()


@pytest.fixture(scope="module")
def wildcard():
    service = Listener("0.0.0.0")
    yield service
    service.close()


@pytest.fixture(scope="module")
def root_secrets(tmp_path_factory) -> Secrets:
    return Secrets(tmp_path_factory.mktemp("outside-every-session"))


def cli_for(srv: Server, folder: Path) -> Cli:
    folder.mkdir(parents=True, exist_ok=True)
    return Cli(clean_env(srv.home), folder)
