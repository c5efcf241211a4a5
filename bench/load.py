"""Issue 17's load benchmark: N concurrent sessions reporting at R Hz each (3 values a report) for
S seconds against one real server, on SQLite or PostgreSQL, with the local executor or Ray.

What runs (all of it real, all on loopback, all under a temporary folder):

- the server is `nsml server` (the team server's CLI, in the foreground, as a team runs it) on a
  free loopback port with a fresh NSML_HOME, `--cpus`/`--memory` declared so that N sessions fit
  at once, `--no-session-network` (sessions reach nothing but their supervisor), the sandbox
  `auto` (bubblewrap) unless `--sandbox` says otherwise; `--db postgres` starts a throwaway
  PostgreSQL cluster from Debian's package (tests/postgres.py) and passes its URL with `--db`;
  `--executor ray` passes `--executor ADDRESS`: `--ray-address` (ray://HOST:PORT or the GCS's
  HOST:PORT, its token from RAY_AUTH_TOKEN), else a one-node Ray cluster started here on
  loopback as the Ray tests start one (tests/ray_cluster.py, token auth on) with logical CPUs,
  memory and worker ports for every session; a server that refuses it (or has no --executor)
  ends the bench with one line and exit status 2;
- a tiny dataset pushed with the CLI, then N sessions posted through `POST /api/sessions` (one
  `main.py`, `--session-cpus`/`--session-memory` each). The entry file is a reporter, not
  training: `nsml.report(step=i, sent_at=time.time(), seq=i, x=(i % 1000) * 0.001)` R times a
  second for S seconds, waking every `--tick` seconds (10 ms) and sending every report then due,
  each with the wall time it was made; its loop is bounded by its count and by a deadline
  (2 S + 10 s), after which it stops even if a starved CPU kept it behind. It prints
  `BENCH sent=… first=… last=… behind_max=…` to its log.

What is measured:

- placement: the N POSTs one after another, then first POST -> every session's `started` (the
  record's, the server's clock) and -> every entry file's first line running (`BENCH up=`). The reporters wait for a common start (`--start-at`, passed by
  the bench: `--start-delay` after the first POST, 5 s + 0.5 s a session by default), so
  sessions are placed by an idle server and all N then report for the same S seconds; also the
  common start -> every session's first value visible through the API;
- values sent (3 x the reporter's own count, read back from its log), stored (every point of
  the three series, read back raw through `GET /api/sessions/S/metrics/KEY?format=columns`, the
  undownsampled route), distinct (distinct steps per series), lost = sent - distinct steps in
  [0, sent), duplicated = stored - distinct, phantom = distinct steps outside [0, sent), wrong =
  stored points whose value is not what was sent (`seq` must equal the step, `x` its formula);
  a session whose count never reached its log (it died first) is left out of these and its
  stored points shown apart;
- ingest lag, two ways: (1) a thread polls `GET /api/sessions?all=true` every `--poll` s (0.5)
  and, for each session whose last report is not yet visible, takes now - `last_values.sent_at`
  (the staleness of what the API shows; the value after it is not visible yet, so this is the
  lag at the frontier); (2) per value, from the same polls: the first poll that showed a `seq`
  at least this one's, minus its `sent_at` (an upper bound, over by up to one poll interval);
- drain: the last report sent -> every session's last value visible;
- CPU seconds over the run (common start -> drained; placement's apart) from /proc, scanned each
  second (CpuGroup: live members' own and reaped time, plus what members that ended took with
  them): the server (its own process and its descendants that are not a session's supervisor
  subtree), PostgreSQL (the postmaster's tree), the sessions
  (the supervisors' subtrees: supervisor, bubblewrap, reporter), the Ray cluster we started
  (`ray start` and everything below it, sessions placed on it included), and the machine as a whole
  (/proc/stat); the server's peak RSS (its tree, sampled each second) and its VmHWM.

    python bench/load.py                                   # 100 x 1 kHz x 300 s, SQLite, local
    python bench/load.py --db postgres                     # the same on a temporary PostgreSQL
    python bench/load.py --sessions 10 --seconds 30 --json # smaller, the figures as JSON
    python bench/load.py --executor ray [--ray-address 127.0.0.1:6379]

Progress goes to stderr, the figures to stdout (a table, or JSON with --json). Exit status 0
when no value was lost, duplicated or wrong and every session exited 0; 1 otherwise; 2 when
the server refuses the executor. Every wait has a deadline; every process started here (server,
sessions, PostgreSQL, Ray) is ended by pid on the way out, Ctrl-C included, and a last sweep
kills (and counts, as a failure) any process still naming the bench's folders.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from _harness import Bench, nsml_command, parse_marks, tar_of  # noqa: E402
from nsml.cli.connection import running_embedded  # noqa: E402

KEYS = ("sent_at", "seq", "x")
DATASET = "load"
SUPERVISOR = b"nsml.scheduler.supervisor"
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
LAG_BIN = 0.01  # per-value lag histogram resolution, seconds

ENTRY = r'''import sys, time
print(f"BENCH up={time.time()!r}", flush=True)  # the entry's first line: the session is running
import nsml

def arg(name, default):
    return float(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default

rate, seconds, tick = arg("--rate", 1000.0), arg("--seconds", 300.0), arg("--tick", 0.01)
n = int(rate * seconds)
report, clock, sleep = nsml.report, time.time, time.sleep
start_at = min(arg("--start-at", 0.0), clock() + 3600)  # every session starts at once, after placement
while clock() < start_at:
    sleep(max(0.0, min(0.5, start_at - clock())))
t0 = clock()
deadline = t0 + 2 * seconds + 10  # bounded: on a starved CPU it stops here, whatever is left unsent
print(f"BENCH start={t0!r} n={n}", flush=True)
i, behind, first = 0, 0.0, None
while i < n:
    now = clock()
    if now > deadline:
        break
    behind = max(behind, now - (t0 + i / rate))  # how late the oldest report due is
    due = min(n, int((now - t0) * rate) + 1)
    if first is None:
        first = clock()
    while i < due:
        report(step=i, sent_at=clock(), seq=i, x=(i % 1000) * 0.001)
        i += 1
    wait = now + tick - clock()
    if wait > 0 and i < n:
        sleep(wait)
print(f"BENCH sent={i} first={first!r} last={clock()!r} behind_max={behind:.4f}", flush=True)
'''


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


class Refused(Exception):
    """The server would not run with the executor asked for."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes ----------------------------------------------------------------------------------

def stat(pid: int) -> tuple[int, float, float, int] | None:
    """(ppid, own CPU s, CPU s of its reaped children, RSS bytes) from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK, (int(fields[13]) + int(fields[14])) / CLK,
            int(fields[21]) * PAGE)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def children_of(table: dict[int, tuple]) -> dict[int, list[int]]:
    children = defaultdict(list)
    for pid, st in table.items():
        children[st[0]].append(pid)
    return children


def descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    """root and every process below it."""
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK, sum(values[:8]) / CLK


class CpuGroup:
    """The CPU seconds of a changing set of processes, scan to scan.

    At a scan it is the sum, over its live members, of their own CPU and what they reaped
    (cutime), plus what members that ended since took with them: a member that vanished counts
    with its last reading, less what its parent's cutime grew by (a parent that waited for it
    holds its time). Exact but for a member's last second before it ends unwaited for, and for
    processes that lived between two scans without a waiting member above them."""

    def __init__(self):
        self.prev: dict[int, tuple[int, float, float]] = {}  # pid -> (ppid, own, reaped) at the last scan
        self.gone = 0.0

    def update(self, members: dict[int, tuple[int, float, float]]) -> None:
        died: dict[int, float] = defaultdict(float)
        for pid, (ppid, own, reaped) in self.prev.items():
            if pid not in members:
                died[ppid] += own + reaped
        for ppid, took in died.items():
            grew = members[ppid][2] - self.prev[ppid][2] if ppid in members and ppid in self.prev else 0.0
            self.gone += max(0.0, took - grew)
        self.prev = members

    def total(self) -> float:
        return self.gone + sum(own + reaped for _, own, reaped in self.prev.values())


class ProcWatch:
    """CPU and memory of the server, the sessions and other process trees (PostgreSQL, Ray), from
    /proc, scanned about once a second. The server group is its process (without what it
    reaped: it reaps the supervisors) and its descendants outside the sessions' supervisor
    subtrees; the sessions group is those subtrees."""

    def __init__(self, server_pid: int, roots: dict[str, int | None]):
        self.server_pid = server_pid
        self.roots = {k: v for k, v in roots.items() if v}  # group name -> the root of its tree
        self.groups = {name: CpuGroup() for name in ("server", "sessions", *roots)}
        self.peak_rss = 0
        self.scans = 0
        self.lock = threading.Lock()  # the sampler thread and the main thread both scan

    def scan(self) -> dict:
        """Scan now; the groups' CPU totals and the machine's."""
        with self.lock:
            self._scan()
            return {**{name: g.total() for name, g in self.groups.items()}, "busy": machine_busy()[0]}

    def _scan(self) -> None:
        table = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                st = stat(int(entry.name))
                if st:
                    table[int(entry.name)] = st
        children = children_of(table)
        member = lambda pid, reaped=True: (table[pid][0], table[pid][1], table[pid][2] if reaped else 0.0)  # noqa: E731
        server, sessions = {}, {}
        if self.server_pid in table:
            server[self.server_pid] = member(self.server_pid, reaped=False)
            for child in children.get(self.server_pid, ()):
                if SUPERVISOR in cmdline(child):
                    sessions.update((p, member(p)) for p in descendants(child, children))
            server.update((p, member(p)) for p in descendants(self.server_pid, children)[1:] if p not in sessions)
            forks = {p for p in server if p != self.server_pid and cmdline(p) == cmdline(self.server_pid)}
            self.peak_rss = max(self.peak_rss, sum(table[p][3] for p in server if p not in forks))  # a fork not yet
            # exec'd (a supervisor being started) shares the server's pages: not counted twice
        self.groups["server"].update(server)
        self.groups["sessions"].update(sessions)
        for name, root in self.roots.items():
            self.groups[name].update({p: member(p) for p in descendants(root, children)} if root in table else {})
        self.scans += 1


def vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def end_processes(pids: list[int], grace: float = 10) -> None:
    """SIGTERM these pids, then SIGKILL whichever is left after `grace` seconds."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(stat(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# -- the server, the database, Ray ----------------------------------------------------------------

class LoadBench(Bench):
    """_harness.Bench with the team server's own command line: `nsml server` in the foreground."""

    def close(self) -> None:
        super().close()
        if self.keep:
            log(f"kept {self.tmp}")

    def start(self, timeout: float = 90) -> "LoadBench":
        cmd = [*nsml_command(), "server", "--home", str(self.home), "--host", "127.0.0.1", "--port", "0",
               "--sandbox", self.sandbox, *self.server_args]
        self.server_log = self.home / "server.log"
        with open(self.server_log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=self.env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.server_log.read_text(errors="replace").strip()
                raise Refused(f"`nsml server` exited with status {self.proc.returncode}: "
                              f"{text.splitlines()[-1] if text else '(no output)'}")
            info = running_embedded(self.home)
            if info:
                self.url = info["url"]
                self.token = (self.home / "token").read_text().strip()
                self.http = httpx.Client(base_url=self.url, timeout=120,
                                         headers={"Authorization": f"Bearer {self.token}"})
                return self
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s:\n" + self.server_log.read_text())


def server_takes_executor() -> bool:
    out = subprocess.run([*nsml_command(), "server", "--help"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "COLUMNS": "200"})
    return "--executor" in out.stdout


def start_ray(root: Path, cpus: float, memory: int, sessions: int):
    """A one-node Ray cluster on loopback, as the Ray tests start one (tests/ray_cluster.py: token
    authentication on, its processes ended by pid), with logical CPUs and memory enough for every
    session and a worker port for each session's actor."""
    try:
        from tests import ray_cluster
    except ImportError as exc:
        raise Refused(f"cannot start a Ray cluster here ({exc}); pass --ray-address of a running one") from None
    node = ray_cluster.Node("head", num_cpus=int(cpus + 1), memory=memory, worker_ports=sessions + 16)
    return ray_cluster.start_cluster([node], root)  # nodes advertise 127.0.0.2: loopback (Ray rewrites 127.0.0.1)


def leftovers(folders: list[Path]) -> list[int]:
    """Processes (not this one) whose command line names one of these folders."""
    marks = [str(f).encode() for f in folders]
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            args = cmdline(int(entry.name))
            if any(m in args for m in marks):
                found.append(int(entry.name))
    return found


def sweep(folders: list[Path], figures: dict) -> None:
    """The last cleanup step: kill, by pid, whatever still names our folders (a sandbox whose
    supervisor was killed under it, say) and count it: a leak is a finding, not silence."""
    left = leftovers(folders)
    if left:
        shown = [f"{p} " + cmdline(p)[:80].replace(b"\0", b" ").decode(errors="replace") for p in left[:5]]
        log(f"{len(left)} processes outlived the cleanup (killed now): " + "; ".join(shown))
        end_processes(left, grace=2)
    figures["leftover_processes"] = len(left)


def start_postgres(folder: Path):
    from tests import postgres

    pg = postgres.start(folder)
    pg.sql("CREATE DATABASE nsml_load")
    pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
    return pg, pg.url("nsml_load"), pid


# -- polling during the run ------------------------------------------------------------------------

class Sampler(threading.Thread):
    """Every `every` s: the sessions list (status, started, last values); every second poll a
    /proc scan. Stops when told, or at its own deadline."""

    def __init__(self, bench: LoadBench, watch: ProcWatch, every: float, deadline: float):
        super().__init__(daemon=True)
        self.bench, self.watch, self.every, self.deadline = bench, watch, every, deadline
        self.halt = threading.Event()
        self.seen: dict[str, list[tuple[float, float, float]]] = defaultdict(list)  # name -> (t, seq, sent_at)
        self.latest: dict[str, dict] = {}
        self.first_visible: dict[str, float] = {}
        self.polls = 0
        self.answer_s: list[float] = []  # how long each poll took to answer
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.halt.is_set() and time.monotonic() < self.deadline:
            self.poll()
            if self.polls % 2 == 0:
                self.watch.scan()
            self.halt.wait(self.every)

    def poll(self) -> None:
        asked = time.time()
        try:
            resp = self.bench.http.get("/api/sessions", params={"all": "true", "dataset": DATASET})
            t = time.time()  # what it shows is at most this old: lags are upper bounds
            self.answer_s.append(t - asked)
            if resp.status_code != 200:
                self.errors.append(f"GET /api/sessions: {resp.status_code} {resp.text[:200]}")
                return
            sessions = resp.json()
        except Exception as exc:  # noqa: BLE001 - counted and shown, the run goes on
            self.errors.append(f"GET /api/sessions: {type(exc).__name__}: {exc}")
            return
        with self.lock:
            self.polls += 1
            for s in sessions:
                self.latest[s["name"]] = s
                last = s.get("last_values") or {}
                if "seq" in last and "sent_at" in last:
                    self.seen[s["name"]].append((t, float(last["seq"]), float(last["sent_at"])))
                    self.first_visible.setdefault(s["name"], t)

    def snapshot(self) -> dict[str, dict]:
        with self.lock:
            return dict(self.latest)


def wait_for(what: str, check, timeout: float, every: float = 0.2):
    """check() until it returns something truthy, at most `timeout` s; RuntimeError naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- reading back ----------------------------------------------------------------------------------

def read_series(bench: LoadBench, name: str, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every point of one series, raw (steps, walltimes, values), through the packed-columns route."""
    resp = bench.http.get(bench.api_path(name) + "/metrics/" + key, params={"format": "columns"})
    resp.raise_for_status()
    head, _, body = resp.content.partition(b"\n")
    count = json.loads(head)["count"]
    cols = np.frombuffer(body, dtype="<f8")
    if len(cols) != 3 * count:
        raise RuntimeError(f"{name} {key}: {len(cols)} numbers for {count} points")
    return cols[:count], cols[count:2 * count], cols[2 * count:]


def sent_marks(bench: LoadBench, name: str, tries: int = 40) -> dict:
    """The reporter's closing BENCH line from its log (retried while its last lines ship)."""
    marks: dict = {}
    for _ in range(tries):
        marks = parse_marks(bench.get(bench.api_path(name) + "/logs")["text"])
        if "sent" in marks:
            return marks
        time.sleep(0.25)
    return marks


def quantile(xs, q: float) -> float | None:
    return float(np.quantile(np.asarray(xs, dtype=float), q)) if len(xs) else None


def hist_quantile(hist: np.ndarray, q: float) -> float | None:
    total = hist.sum()
    if not total:
        return None
    return (int(np.searchsorted(np.cumsum(hist), q * total)) + 1) * LAG_BIN  # the bin's upper edge


def account(bench: LoadBench, sampler: Sampler, names: list[str], marks: dict[str, dict]) -> dict:
    """Sent, stored, distinct, lost, duplicated, wrong; the per-value lag histogram; staleness."""
    out = dict(sent=0, stored=0, distinct=0, lost=0, duplicated=0, wrong=0, regressions=0, phantom=0,
               uncounted_stored=0)
    hist = np.zeros(int(3600 / LAG_BIN) + 1, dtype=np.int64)
    stale: list[float] = []
    unseen = 0
    for name in names:
        sent = int(marks[name].get("sent", 0))
        series = {key: read_series(bench, name, key) for key in KEYS}
        if "sent" not in marks[name]:  # its count never reached the log: nothing to hold its points against
            out["uncounted_stored"] += sum(len(steps) for steps, _, _ in series.values())
            continue
        out["sent"] += 3 * sent
        for key, (steps, _walls, values) in series.items():
            distinct = np.unique(steps)
            sent_steps = distinct[(distinct >= 0) & (distinct < sent) & (distinct == np.floor(distinct))]
            out["stored"] += len(steps)
            out["distinct"] += len(distinct)
            out["phantom"] += len(distinct) - len(sent_steps)  # steps this reporter never sent
            out["lost"] += sent - len(sent_steps)
            out["duplicated"] += len(steps) - len(distinct)
            if key == "seq":
                out["wrong"] += int(np.count_nonzero(values != steps))
            elif key == "x":
                out["wrong"] += int(np.count_nonzero(values != (steps % 1000) * 0.001))
        polls = np.array(sampler.seen.get(name, []), dtype=float).reshape(-1, 3)
        if len(polls):
            t, seq, sent_at = polls[:, 0], polls[:, 1], polls[:, 2]
            out["regressions"] += int(np.count_nonzero(np.diff(seq) < 0))  # what was visible went back
            frontier = seq < sent - 1  # the last report not yet visible: the staleness is the lag at the frontier
            stale.extend((t - sent_at)[frontier].tolist())
            steps, _walls, sent_ats = series["sent_at"]
            k = np.searchsorted(np.maximum.accumulate(seq), steps, side="left")  # first poll showing it
            shown = k < len(t)
            unseen += int(np.count_nonzero(~shown))
            lag = t[k[shown]] - sent_ats[shown]
            hist += np.bincount(np.clip(lag / LAG_BIN, 0, len(hist) - 1).astype(np.int64), minlength=len(hist))  # clock steps: clipped at 0
    out["lag_stale"] = {"p50": quantile(stale, 0.5), "p99": quantile(stale, 0.99), "max": max(stale, default=None),
                        "samples": len(stale)}
    out["lag_value"] = {"p50": hist_quantile(hist, 0.5), "p99": hist_quantile(hist, 0.99),
                        "max": hist_quantile(hist, 1.0), "values": int(hist.sum()), "after_last_poll": unseen}
    return out


# -- the run ----------------------------------------------------------------------------------------

def run(args, tmp: Path, cleanup: list, folders: list[Path]) -> dict:
    n = args.sessions
    figures: dict = {"sessions": n, "rate": args.rate, "seconds": args.seconds, "tick": args.tick, "poll": args.poll, "db": args.db,
                     "executor": args.executor, "sandbox": args.sandbox, "cpus": os.cpu_count(),
                     "load_start": round(os.getloadavg()[0], 2)}
    total_cpus = n * args.session_cpus + 1
    mib = int(n * parse_mib(args.session_memory)) + 1024
    flags = ["--cpus", f"{total_cpus:g}", "--memory", f"{mib}M"]
    if not args.session_network:
        flags.append("--no-session-network")
    if args.executor == "ray":
        if not server_takes_executor():
            raise Refused("`nsml server` has no --executor option in this checkout (the Ray executor of issue 17 "
                          "is not there yet), so there is nothing to place sessions through Ray")
        address, ray_pid, ray_env = args.ray_address, None, {}
        if not address:
            log(f"starting a one-node Ray cluster on loopback ({total_cpus:g} logical CPUs)")
            cluster = start_ray(tmp / "ray", total_cpus, mib << 20, n)
            cleanup.append(cluster.stop)
            address, ray_pid, ray_env = cluster.address, cluster.head.proc.pid, cluster.driver_env()
        flags += ["--executor", address]
        figures["ray_address"], figures["ray_started"] = address, ray_pid is not None
    else:
        ray_pid, ray_env = None, {}
    pg_pid = None
    if args.db == "postgres":
        pg_folder = Path(tempfile.mkdtemp(prefix="nsml-bench-load-pg-"))  # not under a 0700 folder: postgres reads it
        folders.append(pg_folder)
        cleanup.append(lambda: None if args.keep else shutil.rmtree(pg_folder, ignore_errors=True))
        pg, url, pg_pid = start_postgres(pg_folder)
        cleanup.append(pg.stop)
        flags += ["--db", url]
        log(f"PostgreSQL on 127.0.0.1:{pg.port} (temporary cluster, fsync off, as tests/postgres.py starts it)")
    bench = LoadBench(prefix="nsml-bench-load-", sandbox=args.sandbox, server_args=flags)
    bench.keep = args.keep
    folders.append(bench.tmp)
    if args.heartbeat_timeout:
        bench.env["NSML_HEARTBEAT_TIMEOUT"] = f"{args.heartbeat_timeout:g}"  # the server's liveness clock (settings.py)
        figures["heartbeat_timeout"] = args.heartbeat_timeout
    bench.env.update(ray_env)  # the server is the cluster's driver: its address and token
    cleanup.append(bench.close)
    try:
        bench.start()
    except Refused:
        if args.executor == "ray":
            raise
        raise RuntimeError("the server did not start:\n" + bench.server_log.read_text()) from None
    log(f"server {bench.url} (pid {bench.proc.pid}), {args.db}, executor {args.executor}, sandbox {args.sandbox}")
    folder = bench.tmp / "dataset"
    (folder / "train").mkdir(parents=True)
    (folder / "train" / "train_data").write_text("1,2\n3,4\n")
    bench.cli("dataset", "push", DATASET, folder)

    watch = ProcWatch(bench.proc.pid, {"db": pg_pid, "ray": ray_pid})
    before = watch.scan()
    body = tar_of({"main.py": ENTRY})
    start_delay = args.start_delay if args.start_delay is not None else 5 + 0.5 * n
    start_at = time.time() + start_delay
    figures["start_delay"] = start_delay
    params = {"dataset": DATASET, "cpus": args.session_cpus, "memory": args.session_memory,
              "args": f"--rate {args.rate:g} --seconds {args.seconds:g} --tick {args.tick:g} --start-at {start_at:.3f}"}
    budget = start_delay + args.place_timeout + 2 * args.seconds + 10 + args.end_grace + args.drain_timeout + 60
    sampler = Sampler(bench, watch, args.poll, time.monotonic() + budget)
    t_post = time.time()
    sampler.start()
    cleanup.append(lambda: (sampler.halt.set(), sampler.join(10)))  # runs first: cleanup goes in reverse
    names = []
    for _ in range(n):
        resp = bench.http.post("/api/sessions", content=body, headers={"Content-Type": "application/x-tar"}, params=params)
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/sessions: {resp.status_code} {resp.text[:500]}")
        names.append(resp.json()["name"])
    figures["submit_s"] = time.time() - t_post
    log(f"posted {n} sessions in {figures['submit_s']:.1f} s")

    def all_started():
        snap = sampler.snapshot()
        started = [snap[m].get("started") for m in names if m in snap]
        return len(started) == n and all(started) and started

    started = wait_for(f"{n} sessions to be placed", all_started, args.place_timeout)
    figures["placed_s"] = max(started) - t_post
    log(f"all {n} placed {figures['placed_s']:.2f} s after the first POST; they start reporting together "
        f"{start_delay:.0f} s after it")
    if time.time() > start_at:
        log(f"note: placement took longer than --start-delay {start_delay:g} s: the first sessions started before the last was placed")
    placing = watch.scan()
    figures["placement_cpu_s"] = {k: placing[k] - before[k] for k in placing}
    time.sleep(max(0.0, start_at - time.time()))
    at_start = watch.scan()
    final = {"exited", "failed", "stopped", "lost"}

    def first_values():  # or the sessions without one have ended: they never will
        snap = sampler.snapshot()
        return all(m in sampler.first_visible or snap.get(m, {}).get("status") in final for m in names)

    try:
        wait_for("every session's first value", first_values,
                 max(0.0, start_at - time.time()) + args.place_timeout)
        firsts_seen = [sampler.first_visible[m] for m in names if m in sampler.first_visible]
        figures["first_values_s"] = max(firsts_seen) - start_at if len(firsts_seen) == n else None
    except RuntimeError as exc:
        figures["first_values_s"] = None
        log(str(exc))

    # Soft waits from here on: a machine that cannot keep up is a figure, not a crash.
    t_wait = time.monotonic()
    try:
        wait_for("every session to end", lambda: all(sampler.snapshot().get(m, {}).get("status") in final for m in names),
                 max(0.0, start_at - time.time()) + 2 * args.seconds + 10 + args.end_grace, every=1)
    except RuntimeError as exc:
        log(str(exc))
    figures["end_wait_s"] = time.monotonic() - t_wait
    snap = sampler.snapshot()
    bad = {m: snap[m] for m in names if snap[m]["status"] != "exited" or snap[m]["exit_code"] != 0}
    marks = {m: sent_marks(bench, m, tries=40 if m not in bad else 4) for m in names}
    figures["failed"] = {m: f"{s['status']} ({s['exit_code']}) {s['error'][:200]}" for m, s in bad.items()}
    figures["no_count"] = [m for m in names if "sent" not in marks[m]]
    if bad:
        log(f"{len(bad)} sessions did not exit 0, e.g. {next(iter(figures['failed'].items()))}")

    def drained():
        s = sampler.snapshot()
        return all((s[m].get("last_values") or {}).get("seq") == marks[m].get("sent", 0) - 1
                   for m in names if marks[m].get("sent"))

    last_sent = max((mk["last"] for mk in marks.values() if isinstance(mk.get("last"), float)), default=time.time())
    try:
        wait_for("every last value to be visible", drained, args.drain_timeout)
    except RuntimeError as exc:
        log(str(exc))
    # When the sampler first saw each counted session's last value: the drain ends at the latest.
    with sampler.lock:
        seen_last = [next((t for t, seq, _ in sampler.seen.get(m, []) if seq >= marks[m]["sent"] - 1), None)
                     for m in names if marks[m].get("sent")]
    figures["drain_s"] = max(seen_last) - last_sent if seen_last and None not in seen_last else None
    sampler.halt.set()
    sampler.join(30)
    after = watch.scan()
    window = time.time() - max(start_at, t_post)
    figures["window_s"] = window
    figures["cpu_s"] = {k: after[k] - at_start[k] for k in after}
    figures["machine_busy"] = figures["cpu_s"]["busy"] / (window * (os.cpu_count() or 1))
    figures["server_peak_rss"] = watch.peak_rss
    figures["server_vmhwm"] = vm_hwm(bench.proc.pid)
    figures["polls"], figures["poll_errors"] = sampler.polls, sampler.errors[:10]
    figures["poll_answer_s"] = {"p50": quantile(sampler.answer_s, 0.5), "max": max(sampler.answer_s, default=None)}
    figures["poll_every_s"] = (time.time() - t_post) / max(1, sampler.polls)
    counted = [marks[m] for m in names if marks[m].get("sent") and isinstance(marks[m].get("first"), float)]
    firsts, lasts = [mk["first"] for mk in counted], [mk["last"] for mk in counted]
    rates = [mk["sent"] / max(1e-9, mk["last"] - mk["first"]) for mk in counted]
    ups = [marks[m]["up"] for m in names if isinstance(marks[m].get("up"), float)]
    figures["running_s"] = max(ups) - t_post if len(ups) == n else None  # first POST -> every entry's first line
    figures["ran"] = len(ups)
    figures["last_up_s"] = max(ups) - t_post if ups else None
    figures["session_rate_median"] = quantile(rates, 0.5)
    figures["session_rate_min"] = min(rates, default=None)
    figures["behind_max"] = max((marks[m].get("behind_max", 0.0) for m in names), default=None)
    if firsts and lasts:
        overlap = min(lasts) - max(firsts)
        figures["all_reporting_s"] = max(0.0, overlap)  # every session reporting at once for this long
        figures["values_per_s"] = 3 * sum(marks[m].get("sent", 0) for m in names) / max(1e-9, max(lasts) - min(firsts))
    log(f"reading back {3 * n} series …")
    t = time.time()
    figures.update(account(bench, sampler, names, marks))
    figures["readback_s"] = time.time() - t
    figures["expected"] = 3 * n * int(args.rate * args.seconds)
    figures["load_end"] = round(os.getloadavg()[0], 2)
    return figures


def parse_mib(size: str) -> float:
    from nsml.core.resources import parse_size

    return parse_size(size) / (1 << 20)


# -- output -----------------------------------------------------------------------------------------

def fmt(x, unit: str = "", digits: int = 2) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:,.{digits}f}{unit}"
    return f"{x:,}{unit}"


def table(f: dict) -> str:
    cpu, lag, val = f["cpu_s"], f["lag_value"], f["lag_stale"]
    win = f["window_s"]
    pct = lambda s: f"{s:,.1f} s ({100 * s / win:.0f} % of a core)"  # noqa: E731
    rows = [
        ("sessions x rate x seconds", f"{f['sessions']} x {f['rate']:g} Hz x {f['seconds']:g} s, 3 values a report", ""),
        ("database / executor / sandbox", f"{f['db']} / {f['executor']} / {f['sandbox']}", ""),
        ("placed (first POST -> all started)", fmt(f["placed_s"], " s"), ""),
        ("running (first POST -> every entry file's first line)", fmt(f.get("running_s"), " s") if f["ran"] == f["sessions"]
         else f"{f['ran']} of {f['sessions']} ran, the last {fmt(f['last_up_s'], ' s')} after the first POST", ""),
        (f"submitted ({f['sessions']} POSTs, one after another)", fmt(f["submit_s"], " s"), ""),
        ("common start -> every session's first value visible", fmt(f.get("first_values_s"), " s"), ""),
        ("values expected (N x R x S x 3)", fmt(f["expected"]), ""),
        ("values sent", fmt(f["sent"]), ""),
        ("values stored", fmt(f["stored"]), "= sent"),
        ("lost (sent - distinct stored)", fmt(f["lost"]), "0"),
        ("duplicated (stored - distinct)", fmt(f["duplicated"]), "0"),
        ("wrong values / steps never sent / visible seq going back", f"{f['wrong']} / {f['phantom']} / {f['regressions']}",
         "0 / 0 / 0"),
        *([("stored by sessions whose count never reached their log", fmt(f["uncounted_stored"]), "")]
          if f["no_count"] else []),
        ("values/s sent, all sessions (first -> last report)", fmt(f.get("values_per_s"), "", 0), ""),
        ("report rate per session, median (min)",
         f"{fmt(f['session_rate_median'], ' Hz', 0)} ({fmt(f['session_rate_min'], ' Hz', 0)})", f"{f['rate']:g} Hz"),
        ("reporter behind schedule, max", fmt(f["behind_max"], " s"), ""),
        ("ingest lag, frontier staleness p50 / p99 / max",
         f"{fmt(val['p50'], ' s')} / {fmt(val['p99'], ' s')} / {fmt(val['max'], ' s')} ({val['samples']:,} samples)", "p99 <= 2 s"),
        ("ingest lag, every value p50 / p99 / max (+<= 1 poll)",
         f"{fmt(lag['p50'], ' s')} / {fmt(lag['p99'], ' s')} / {fmt(lag['max'], ' s')}", "p99 <= 2 s"),
        ("polls of the sessions list: every / answer p50 (max)",
         f"{fmt(f['poll_every_s'], ' s')} / {fmt(f['poll_answer_s']['p50'], ' s', 3)} ({fmt(f['poll_answer_s']['max'], ' s')})",
         f"every {f['poll']:g} s"),
        ("drain (last report sent -> all visible)", fmt(f["drain_s"], " s"), ""),
        ("server CPU over the run", pct(cpu["server"]), ""),
        ("database CPU (PostgreSQL processes)", pct(cpu["db"]) if f["db"] == "postgres" else "in the server (SQLite)", ""),
        ("sessions CPU (supervisors, sandboxes, reporters)",
         pct(cpu["sessions"]) if f["executor"] == "local" else "in the Ray cluster's", ""),
        *([("Ray cluster CPU (its daemons, actors and the sessions on it)", pct(cpu["ray"]), "")]
          if f["executor"] == "ray" and f.get("ray_started") else []),
        ("machine busy over the run", f"{100 * f['machine_busy']:.0f} % of {f['cpus']} CPUs", ""),
        ("server RSS, peak sampled (VmHWM)",
         f"{f['server_peak_rss'] / 2**20:,.0f} MiB ({(f['server_vmhwm'] or 0) / 2**20:,.0f} MiB)", ""),
        ("server CPU placing the sessions (first POST -> all started)", f"{f['placement_cpu_s']['server']:,.1f} s", ""),
        ("run window (common start -> drained) / read-back", f"{win:,.0f} s / {f['readback_s']:,.0f} s", ""),
        ("load average start -> end", f"{f['load_start']} -> {f['load_end']}", ""),
        ("processes left after the cleanup (killed by the sweep)", fmt(f["leftover_processes"]), "0"),
    ]
    lines = ["| figure | value | goal |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--rate", type=float, default=1000.0, help="reports a second per session (3 values each)")
    ap.add_argument("--seconds", type=float, default=300.0, help="how long each session reports")
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    ap.add_argument("--ray-address", help="ray://HOST:PORT or HOST:PORT of a running cluster (default: a one-node "
                    "cluster started here on loopback)")
    ap.add_argument("--sandbox", choices=("auto", "bwrap", "none"), default="auto")
    ap.add_argument("--session-network", action="store_true", help="give sessions a network (default: none)")
    ap.add_argument("--session-cpus", type=float, default=0.5)
    ap.add_argument("--session-memory", default="256M")
    ap.add_argument("--tick", type=float, default=0.01, help="the reporter wakes this often and sends what is due")
    ap.add_argument("--start-delay", type=float, help="seconds from the first POST to the reporters' common start "
                    "(default 5 + 0.5 per session): placement is timed on an idle server")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between polls of the sessions list")
    ap.add_argument("--place-timeout", type=float, default=300)
    ap.add_argument("--end-grace", type=float, default=120, help="after the reporters' own deadline")
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--heartbeat-timeout", type=float, help="the server's NSML_HEARTBEAT_TIMEOUT (default: its own, 30 s)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders (logs, database) and print where")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = ap.parse_args(argv)
    if args.sessions < 1 or args.rate <= 0 or args.seconds <= 0 or args.tick <= 0 or args.poll <= 0:
        ap.error("--sessions, --rate, --seconds, --tick and --poll must be positive")

    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="nsml-bench-load-"))
    folders = [tmp]
    figures: dict = {}
    cleanup: list = [lambda: sweep(folders, figures),
                     lambda: log(f"kept {tmp}") if args.keep else shutil.rmtree(tmp, ignore_errors=True)]
    t0 = time.time()
    try:
        figures.update(run(args, tmp, cleanup, folders))
    except Refused as exc:
        print(f"load.py: the server refused --executor {args.executor}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        return 130
    except (RuntimeError, httpx.HTTPStatusError) as exc:  # a deadline passed, or the API answered an error
        log(f"load.py: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        for step in reversed(cleanup):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - the next cleanup must still run
                log(f"cleanup: {type(exc).__name__}: {exc}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    figures["bench_s"] = time.time() - t0
    print(json.dumps(figures, indent=1) if args.json else table(figures))
    problems = [k for k in ("lost", "duplicated", "wrong", "regressions", "phantom", "leftover_processes") if figures[k]]
    if figures["failed"] or figures["no_count"] or problems or not figures["sent"]:
        log(f"load.py: not clean: {problems or ''} failed={figures['failed']} no_count={figures['no_count']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
