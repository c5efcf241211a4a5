"""Latency of `nsml run`: from invoking the command to the entry file's first line executing.

On a warm embedded server (started once on a temporary NSML_HOME, as `nsml` would reuse it), a
small project is run several times:

- variant "no requirements": the session runs with the server's own interpreter;
- variant "requirements.txt": the project lists an already-installed package; one warm-up run
  builds (and caches) its virtualenv first, then the timed runs reuse it.

The entry file's first line records time.time(); it also records its own process start time
(/proc/self/stat, 10 ms resolution), and the bench reads the session's timestamps (created,
started), the spec.json written just before the supervisor is spawned, and SPOOL/user.pid (written
by the supervisor just after it spawned the user process). Together they break the time into:

  cli      invoking `nsml run` until the server stored the session (`created`): interpreter start,
           CLI imports, the dataset check, the upload of the code tar, the session row
  queue    `created` until the scheduler moved it to running (`started`): the scheduler wake-up
  launch   `started` until spec.json: copying the code, the environment look-up
  superv.  spec.json until the supervisor spawned the user process (user.pid): supervisor start
  python   user process start until its first line: interpreter start-up (site, .pth files)
  (user.pid to the user process's own start time is fork/exec, ~0, folded into "superv.")

Then `nsml run` is timed from inside its own process (CLI_PROBE: timers wrapped around its
phases; the CLI's code is not changed): interpreter start, imports, the health check, the HTTP
client, the dataset check, upload + create, the rest, and the interpreter's exit; as is and with
proposed changes emulated one after the other (EMULATE). Finally, on the side: `python -c pass`,
`import nsml.cli.main`, `import nsml.scheduler.supervisor`, `nsml --version`.

    python bench/run_latency.py [--runs 7] [--server-nodelay] [--cli-fixes]

--server-nodelay runs the server with TCP_NODELAY on its connections and --cli-fixes runs the
timed `nsml run`s with the emulated CLI changes: both are proposals measured here, not the code
as it is (see README.md).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Bench, nsml_command, parse_marks  # noqa: E402

ENTRY = r'''import time; FIRST = time.time()
import os
with open("/proc/self/stat") as f:
    ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start time, clock ticks after boot
with open("/proc/uptime") as f:
    uptime = float(f.read().split()[0])
now = time.time()
print(f"BENCH first_line={FIRST!r} proc_start={now - uptime + ticks / os.sysconf('SC_CLK_TCK')!r}", flush=True)
'''

TARGET = 1.0

# Proposed changes outside bench/ (see README.md), emulated without editing the CLI; each is
# switched on by an environment variable so their gains can be measured one by one:
#   BLOCK_TRIO      httpcore imports trio when it is installed (~0.1 s); the CLI never uses it
#   NO_TLS_CONTEXT  httpx.Client builds an SSL context with certifi's CA bundle (~0.05-0.2 s per
#                   client, two per command) even for the local http:// server; verify=False
#                   for http:// URLs skips it (no TLS is used there anyway)
#   FAST_EXIT       after the command finished and flushed stdout/stderr, os._exit(code): the
#                   interpreter's teardown of typer/pydantic/rich/httpx modules is skipped
EMULATE = r'''
import os, sys
if os.environ.get("BLOCK_TRIO"):
    sys.modules["trio"] = None
if os.environ.get("NO_TLS_CONTEXT"):
    import httpx
    _init = httpx.Client.__init__
    def _client_init(self, *a, **k):
        k.setdefault("verify", False)  # emulation: only ever used against http:// here
        _init(self, *a, **k)
    httpx.Client.__init__ = _client_init
def _finish(code=0):
    if os.environ.get("FAST_EXIT"):
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
'''

# the CLI as `nsml` runs it, with the emulated changes the environment switches on
CLI_FIXED = EMULATE + r'''
from nsml.cli.main import main
try:
    main()
except SystemExit as exc:
    _finish(exc.code if isinstance(exc.code, int) else 1)
    raise
_finish(0)
'''

# `nsml run` in-process with timers around its phases (the CLI's own code is not changed):
# a PROBE line on stderr, in seconds.
CLI_PROBE = r'''import time; T0 = time.time(); t = time.perf_counter()
''' + EMULATE + r'''
import nsml.cli.main as m
from nsml.cli import connection, sessions
imports = time.perf_counter() - t
marks = dict.fromkeys(["resolve", "client", "get", "upload"], 0.0)
def timed(name, fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            marks[name] += time.perf_counter() - t
    return wrapper
connection.resolve = timed("resolve", connection.resolve)
connection.Api.__init__ = timed("client", connection.Api.__init__)
connection.Api.get = timed("get", connection.Api.get)
sessions.upload_folder = timed("upload", sessions.upload_folder)
sys.argv = ["nsml", *sys.argv[1:]]
t = time.perf_counter()
try:
    m.main()
except SystemExit:
    pass
total = time.perf_counter() - t
other = total - sum(marks.values())
print("PROBE " + " ".join(f"{k}={v!r}" for k, v in dict(T0=T0, imports=imports, other=other, **marks, T1=time.time()).items()),
      file=sys.stderr, flush=True)
_finish(0)
'''

FIXES = ("BLOCK_TRIO", "NO_TLS_CONTEXT", "FAST_EXIT")


def stat_mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def one_run(bench: Bench, project: Path, cli_fixes: bool = False) -> dict:
    if cli_fixes:
        cmd, env = [sys.executable, "-c", CLI_FIXED], dict(bench.env, **dict.fromkeys(FIXES, "1"))
    else:
        cmd, env = nsml_command(), bench.env
    t0 = time.time()
    out = subprocess.run([*cmd, "run", "-d", "bench"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=120)
    t_cli_exit = time.time()
    if out.returncode != 0:
        raise RuntimeError(f"nsml run failed:\n{out.stdout}\n{out.stderr}")
    name = bench.session_name(out.stdout)
    session = bench.wait(name, timeout=60, poll=0.02)
    if session["status"] != "exited":
        raise RuntimeError(f"{name} ended {session['status']}: {session['error']}\n{bench.logs(name)}")
    # the log reaches the server a poll interval after the process wrote it; read it back
    marks = parse_marks(bench.logs(name))
    run_dir = bench.run_dir(name)
    spec_t = stat_mtime(run_dir / "spec.json")
    pid_t = stat_mtime(run_dir / "spool" / "user.pid")
    first = marks["first_line"]
    row = {
        "total": first - t0,
        "cli_exit": t_cli_exit - t0,
        "cli": session["created"] - t0,
        "queue": session["started"] - session["created"],
        "launch": spec_t - session["started"],
        "supervisor": pid_t - spec_t,
        "python": first - marks["proc_start"],
    }
    return row


def cli_breakdown(bench: Bench, project: Path, reps: int, fixes: tuple = ()) -> dict:
    """Median seconds per phase of `nsml run`, measured inside the CLI process (CLI_PROBE)."""
    env = dict(bench.env, **dict.fromkeys(fixes, "1"))
    rows = []
    for _ in range(reps):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", CLI_PROBE, "run", "-d", "bench"], cwd=project, env=env,
                             capture_output=True, text=True, timeout=120)
        t1 = time.time()
        if out.returncode != 0:
            raise RuntimeError(f"probe failed:\n{out.stdout}\n{out.stderr}")
        bench.wait(bench.session_name(out.stdout), timeout=60, poll=0.05)
        p = parse_marks(out.stderr, "PROBE ")
        rows.append({"python start": p["T0"] - t0, "imports": p["imports"], "resolve (health check)": p["resolve"],
                     "http client": p["client"], "GET dataset": p["get"], "upload + create": p["upload"],
                     "typer, print, rest": p["other"], "exit": t1 - p["T1"], "total": t1 - t0})
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def side_timings(bench: Bench, reps: int = 5) -> dict:
    def timed(argv):
        xs = []
        for _ in range(reps):
            t = time.perf_counter()
            subprocess.run(argv, env=bench.env, check=True, capture_output=True)
            xs.append(time.perf_counter() - t)
        return statistics.median(xs)

    bare = timed([sys.executable, "-c", "pass"])
    isolated = timed([sys.executable, "-I", "-S", "-c", "pass"])
    cli_import = timed([sys.executable, "-c", "import nsml.cli.main"])
    supervisor_import = timed([sys.executable, "-c", "import nsml.scheduler.supervisor"])
    version = timed([*nsml_command(), "--version"])
    return {"python -c pass": bare, "python -I -S -c pass": isolated, "import nsml.cli.main": cli_import,
            "import nsml.scheduler.supervisor": supervisor_import, "nsml --version": version}


def summarize(label: str, rows: list[dict]) -> float:
    keys = ["total", "cli", "queue", "launch", "supervisor", "python", "cli_exit"]
    print(f"\n{label}: {len(rows)} runs (seconds)")
    print(f"  {'':12s}" + "".join(f"{k:>11s}" for k in keys))
    for name, fn in (("median", statistics.median), ("max", max), ("min", min)):
        print(f"  {name:12s}" + "".join(f"{fn(r[k] for r in rows):11.3f}" for k in keys))
    med = statistics.median(r["total"] for r in rows)
    mx = max(r["total"] for r in rows)
    verdict = "meets" if med <= TARGET else "MISSES"
    print(f"  -> invoke-to-first-line median {med:.3f} s, max {mx:.3f} s ({verdict} the {TARGET:.0f} s target on the median)")
    return med


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per variant")
    parser.add_argument("--server-nodelay", action="store_true",
                        help="run the server with TCP_NODELAY on its connections (a proposed fix; see _harness.py)")
    parser.add_argument("--cli-fixes", action="store_true",
                        help="run the CLI with the emulated proposed changes (see EMULATE)")
    parser.add_argument("--package", default="httpx", help="an installed package for requirements.txt")
    args = parser.parse_args()

    print(f"nsml run latency, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, CLI: {' '.join(nsml_command())}"
          f"{', server with TCP_NODELAY (proposed fix)' if args.server_nodelay else ''}"
          f"{', CLI with the emulated proposed changes' if args.cli_fixes else ''}; "
          f"load average {os.getloadavg()[0]:.2f}")
    with Bench(server_nodelay=args.server_nodelay) as bench:
        bench.push_dataset("bench")
        plain = bench.project("plain", ENTRY)
        reqs = bench.project("reqs", ENTRY, **{"requirements.txt": args.package + "\n"})

        one_run(bench, plain, args.cli_fixes)  # warm the OS caches and the server's code paths; not counted
        rows = [one_run(bench, plain, args.cli_fixes) for _ in range(args.runs)]
        summarize("no requirements", rows)

        warm = one_run(bench, reqs, args.cli_fixes)  # builds the virtualenv once
        print(f"\nrequirements.txt ({args.package}): first run, building the environment: {warm['total']:.2f} s "
              f"(launch {warm['launch']:.2f} s)")
        rows = [one_run(bench, reqs, args.cli_fixes) for _ in range(args.runs)]
        summarize(f"requirements.txt ({args.package}), environment cached", rows)

        print("\nwhere `nsml run` spends its time, measured inside the CLI process (median of 5, seconds):")
        columns = [cli_breakdown(bench, plain, 5, FIXES[:i]) for i in range(len(FIXES) + 1)]
        print(f"  {'':24s}{'as is':>9s}" + "".join(f"{'+' + f.lower():>16s}" for f in FIXES))
        for k in columns[0]:
            print(f"  {k:24s}" + "".join(f"{c[k]:9.3f}" if i == 0 else f"{c[k]:16.3f}" for i, c in enumerate(columns)))
        print("  (each column adds one emulated change to the one before; see EMULATE above)")

        print("\nside timings (median of 5, seconds):")
        for k, v in side_timings(bench).items():
            print(f"  {k:34s} {v:.3f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
