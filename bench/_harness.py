"""Shared helpers for the benchmarks: a real NSML server on a temporary NSML_HOME, the real CLI.

Mirrors tests/conftest.py (kept separate so the benchmarks do not depend on pytest): the server
is `python -m nsml.server.main --embedded` on a free port, written to HOME/server.json, which is
exactly what `nsml` finds and reuses, so the CLI talks to it as to a warm embedded server.

Sessions outlive the server by design (their supervisors run in process groups of their own),
so `Bench.close()` kills, by pid, every supervisor and user process group under the temporary
home, then deletes it.
"""

import io
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from nsml.cli.connection import running_embedded

REPO = Path(__file__).resolve().parents[1]


def nsml_command() -> list[str]:
    """How a user invokes the CLI: the `nsml` console script next to this interpreter if there
    is one (not a pyenv shim, whose bash start-up is not NSML's), else `python -m nsml`."""
    script = Path(sys.executable).with_name("nsml")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "nsml"]


class Bench:
    def __init__(self, prefix: str = "nsml-bench-", sandbox: str = "auto", server_args: list[str] | None = None):
        self.sandbox = sandbox  # the server's --sandbox (auto, bwrap or none)
        self.server_args = list(server_args or [])  # more of the server's flags (--db, --inventory, …)
        self.tmp = Path(tempfile.mkdtemp(prefix=prefix))
        self.home = self.tmp / "home"
        self.home.mkdir()
        self.work = self.tmp / "work"
        self.work.mkdir()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("NSML_")}
        self.env.update(NSML_HOME=str(self.home), USER="alice", LOGNAME="alice", PYTHONUNBUFFERED="1")
        self.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        self.proc: subprocess.Popen | None = None
        self.url = self.token = ""
        self.http: httpx.Client | None = None

    # -- server -----------------------------------------------------------------------------
    def start(self, timeout: float = 60) -> "Bench":
        cmd = [sys.executable, "-m", "nsml.server.main", "--home", str(self.home), "--embedded",
               "--port", "0", "--cpus", "64", "--memory", "256G", "--sandbox", self.sandbox, *self.server_args]
        log = open(self.home / "server.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited:\n" + (self.home / "server.log").read_text())
            info = running_embedded(self.home)  # the CLI's own check: server.json names a healthy server
            if info:
                self.url = info["url"]
                self.token = (self.home / "token").read_text().strip()
                self.http = httpx.Client(base_url=self.url, timeout=60,
                                         headers={"Authorization": f"Bearer {self.token}"})
                return self
            time.sleep(0.05)
        raise RuntimeError("the server did not start")

    keep = False

    def close(self) -> None:
        self.kill_sessions()
        if self.http is not None:
            self.http.close()
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.kill_sessions()  # any a shutting-down server might still have started
        if not self.keep:  # --keep: the folder (server log, runs, database) stays for a look
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "Bench":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def kill_sessions(self) -> None:
        """Kill, by pid, the user process groups and supervisors that belong to this home."""
        for pid_file in (self.home / "runs").glob("*/user.pid"):
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        marker = f"nsml.scheduler.supervisor\0{self.home}/".encode()
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if marker in (proc / "cmdline").read_bytes():
                    os.killpg(int(proc.name), signal.SIGKILL)  # its own group (start_new_session)
            except OSError:
                pass

    # -- CLI and API ------------------------------------------------------------------------
    def cli(self, *args, cwd: Path | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*nsml_command(), *map(str, args)], cwd=cwd or self.work, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"nsml {' '.join(map(str, args))} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def get(self, path: str, **kw):
        resp = self.http.get(path, **kw)
        resp.raise_for_status()
        return resp.json()

    def push_dataset(self, name: str = "bench") -> str:
        folder = self.tmp / "dataset" / name
        (folder / "train").mkdir(parents=True)
        (folder / "train" / "train_data").write_text("1,2\n3,4\n")
        self.cli("dataset", "push", name, folder)
        return name

    def project(self, name: str, main: str, **files: str) -> Path:
        folder = self.work / name
        folder.mkdir(parents=True)
        (folder / "main.py").write_text(main)
        for fname, text in files.items():
            (folder / fname).write_text(text)
        return folder

    @staticmethod
    def session_name(run_output: str) -> str:
        """'Session alice/bench/3 is started' -> 'alice/bench/3'."""
        for word in run_output.split():
            if word.count("/") == 2:
                return word
        raise RuntimeError(f"no session name in {run_output!r}")

    @staticmethod
    def api_path(name: str) -> str:
        return "/api/sessions/" + name

    def session(self, name: str) -> dict:
        return self.get(self.api_path(name))

    def wait(self, name: str, statuses=("exited", "failed", "stopped"), timeout: float = 120, poll: float = 0.05) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.session(name)
            if s["status"] in statuses:
                return s
            time.sleep(poll)
        raise RuntimeError(f"{name} did not reach {statuses}: {self.session(name)}")

    def logs(self, name: str) -> str:
        return self.cli("logs", name).stdout

    def run_dir(self, name: str) -> Path | None:
        """NSML_HOME/runs/<id> of a session (found by its spec.json)."""
        for spec in (self.home / "runs").glob("*/spec.json"):
            try:
                if json.loads(spec.read_text())["session"] == name:
                    return spec.parent
            except (OSError, ValueError, KeyError):
                continue
        return None


def insert_sessions(store, rows: list[dict], counters: dict) -> None:
    """Session rows (SessionRow columns) and their per-(owner, dataset) counters, straight into
    the store's tables: 10,000 sessions in a second, where the API would take minutes."""
    from nsml.store.sql.models import SessionCounterRow, SessionRow

    with store.engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(SessionRow.__table__.insert(), rows[i:i + 2000])
        conn.execute(SessionCounterRow.__table__.insert(),
                     [dict(owner=o, dataset=d, last=n) for (o, d), n in counters.items()])


def quantiles(xs) -> dict:
    xs = sorted(xs)
    pick = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]
    return {"n": len(xs), "median": statistics.median(xs), "p90": pick(0.9), "max": xs[-1], "min": xs[0]}


def parse_marks(text: str, prefix: str = "BENCH ") -> dict:
    """Lines 'BENCH key=value key=value' of a session's log, as one dict of floats (or strings)."""
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            for item in line[len(prefix):].split():
                key, _, value = item.partition("=")
                try:
                    out[key] = float(value)
                except ValueError:
                    out[key] = value
    return out


def journal_reports(data: bytes) -> int:
    """The reports a journal holds: one per metrics line, one per row of a batch line
    (nsml/core/spool.py)."""
    count = 0
    for line in data.splitlines():
        record = json.loads(line)
        count += len(record["r"]) if record.get("k") == "b" else record.get("k") == "m"
    return count


def timed(fn, repeat: int) -> dict:
    """First call (cold-ish) and median/p95/max of `repeat` more, in ms; the last result kept.
    p95 is the nearest rank: with fewer than 20 calls it is the slowest."""
    t = time.perf_counter()
    result = fn()
    first = (time.perf_counter() - t) * 1000
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    p95 = sorted(times)[max(0, math.ceil(0.95 * len(times)) - 1)]
    return {"first": first, "median": statistics.median(times), "p95": p95, "max": max(times), "result": result}


def tar_of(files: dict[str, str]) -> bytes:
    """An uncompressed tar of text files {name: text}, as the API takes code."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
