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
client, the dataset check, upload + create, the rest, and the process's exit. Finally, on the
side: `python -c pass`, `import nsml.cli.main`, `import nsml.scheduler.supervisor`,
`nsml --version`.

    python bench/run_latency.py [--runs 7]
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

# `nsml run` in-process with timers around its phases (the CLI's own code is not changed): a
# PROBE line on stderr, in seconds. The CLI ends with os._exit once its output is flushed, so
# the line is printed from a wrapper of os._exit; "exit" is then what is left after it.
CLI_PROBE = r'''import time; T0 = time.time(); t = time.perf_counter()
import os, sys
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
_exit = os._exit
def probe_exit(code):
    other = time.perf_counter() - t - sum(marks.values())
    print("PROBE " + " ".join(f"{k}={v!r}" for k, v in dict(T0=T0, imports=imports, other=other, **marks, T1=time.time()).items()),
          file=sys.stderr, flush=True)
    _exit(code)
os._exit = probe_exit
sys.argv = ["nsml", *sys.argv[1:]]
t = time.perf_counter()
m.main()
'''


def stat_mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def one_run(bench: Bench, project: Path) -> dict:
    t0 = time.time()
    out = subprocess.run([*nsml_command(), "run", "-d", "bench"], cwd=project, env=bench.env,
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
    pid_t = stat_mtime(run_dir / "user.pid" if (run_dir / "user.pid").exists() else run_dir / "spool" / "user.pid")
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


def cli_breakdown(bench: Bench, project: Path, reps: int) -> dict:
    """Median seconds per phase of `nsml run`, measured inside the CLI process (CLI_PROBE)."""
    rows = []
    for _ in range(reps):
        t0 = time.time()
        out = subprocess.run([sys.executable, "-c", CLI_PROBE, "run", "-d", "bench"], cwd=project, env=bench.env,
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
    parser.add_argument("--sandbox", default="auto", help="the server's --sandbox: auto (bubblewrap where it works) or none, to compare")
    parser.add_argument("--package", default="httpx", help="an installed package for requirements.txt")
    args = parser.parse_args()

    print(f"nsml run latency, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, CLI: {' '.join(nsml_command())}; "
          f"load average {os.getloadavg()[0]:.2f}")
    with Bench(sandbox=args.sandbox) as bench:
        bench.push_dataset("bench")
        plain = bench.project("plain", ENTRY)
        reqs = bench.project("reqs", ENTRY, **{"requirements.txt": args.package + "\n"})

        one_run(bench, plain)  # warm the OS caches and the server's code paths; not counted
        rows = [one_run(bench, plain) for _ in range(args.runs)]
        summarize("no requirements", rows)

        warm = one_run(bench, reqs)  # builds the virtualenv once
        print(f"\nrequirements.txt ({args.package}): first run, building the environment: {warm['total']:.2f} s "
              f"(launch {warm['launch']:.2f} s)")
        rows = [one_run(bench, reqs) for _ in range(args.runs)]
        summarize(f"requirements.txt ({args.package}), environment cached", rows)

        print("\nwhere `nsml run` spends its time, measured inside the CLI process (median of 5, seconds):")
        for k, v in cli_breakdown(bench, plain, 5).items():
            print(f"  {k:24s}{v:9.3f}")

        print("\nside timings (median of 5, seconds):")
        for k, v in side_timings(bench).items():
            print(f"  {k:34s} {v:.3f}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
