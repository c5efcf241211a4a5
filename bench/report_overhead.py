"""`nsml.report()` inside a real session: its cost per call, and how soon the values are queryable.

A temporary NSML_HOME server is started, and an entry file is run with `nsml run` as a real
session (supervisor, spool journal, shipping over HTTP, SQLite ingest). The entry file makes
CALLS calls of

    nsml.report(step=i, loss=1 / (i + 1), acc=i / CALLS)

timing each one alone with time.perf_counter_ns, and prints the median, p90 and p99 to its log,
with the wall time (time.time()) of its first and last report. Each call reports 2 values (loss
and acc; step is their x coordinate, not a value), so the default 150,000 calls are the
**300,000 values** of the target. The bench polls GET /api/sessions/O/D/N/metrics (points per
key) until both keys have CALLS points and prints:

  (a) per-call cost: median / p90 / p99, read back from the session's log with `nsml logs`
      (target: median <= 5 us). The timer's own cost (an empty timed loop) is printed and not
      subtracted;
  (b) latency from the entry file's last report to the moment all values are queryable
      (target <= 5 s), and the end-to-end throughput in values/s (first report to complete).

Then, to isolate the server side, the store's ingest alone (no HTTP, no supervisor) on the
same journal bytes: values/s of SqlStore.ingest_journal in 8 MiB chunks, as the supervisor sends.

    python bench/report_overhead.py [--calls 150000] [--repeat 3] [--trace]

--trace prints, per session, when the counts grew (seconds after the last report, points).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Bench, parse_marks  # noqa: E402

ENTRY = r'''import sys
import time
from time import perf_counter_ns

import nsml

calls = int(sys.argv[1])
report = nsml.report

# the timer's own cost: an empty timed loop (not subtracted below)
timer = []
for i in range(min(calls, 100_000)):
    t0 = perf_counter_ns()
    timer.append(perf_counter_ns() - t0)

per_call = [0] * calls
first_wall = time.time()
loop0 = perf_counter_ns()
for i in range(calls):
    loss = 1.0 / (i + 1)
    acc = i / calls
    t0 = perf_counter_ns()
    report(step=i, loss=loss, acc=acc)
    per_call[i] = perf_counter_ns() - t0
loop = perf_counter_ns() - loop0
last_wall = time.time()

first_call = per_call[0]
per_call.sort()
timer.sort()
q = lambda xs, p: xs[min(len(xs) - 1, int(p * len(xs)))]
print(f"BENCH calls={calls} first_wall={first_wall!r} last_wall={last_wall!r} "
      f"median_ns={q(per_call, 0.5)} p90_ns={q(per_call, 0.9)} p99_ns={q(per_call, 0.99)} "
      f"max_ns={per_call[-1]} first_call_ns={first_call} timer_ns={q(timer, 0.5)} "
      f"loop_mean_ns={loop / calls:.1f}", flush=True)
'''

TARGET_CALL_US = 5.0
TARGET_LATENCY_S = 5.0
KEYS = ("acc", "loss")


def one_session(bench: Bench, project: Path, calls: int, poll: float) -> dict:
    out = bench.cli("run", "-d", "bench", "-a", str(calls), cwd=project)
    name = bench.session_name(out.stdout)
    path = bench.api_path(name) + "/metrics"
    first_seen = None
    trace = []  # (wall time, points so far) whenever the count changed
    deadline = time.monotonic() + 180
    while True:
        counts = bench.get(path)
        now = time.time()
        if first_seen is None and counts:
            first_seen = now
        total = sum(counts.values())
        if not trace or trace[-1][1] != total:
            trace.append((now, total))
        if all(counts.get(k, 0) >= calls for k in KEYS):
            complete = now
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: only {counts} after 180 s")
        time.sleep(poll)
    session = bench.wait(name, timeout=60)
    if session["status"] != "exited":
        raise RuntimeError(f"{name} ended {session['status']}: {session['error']}\n{bench.logs(name)}")
    marks = parse_marks(bench.logs(name))
    if "last_wall" not in marks:
        raise RuntimeError(f"{name}: no BENCH line in its log:\n{bench.logs(name)}")
    # spot-check what was stored: every point, in order, with the reported values
    series = bench.get(path + "/loss")
    if len(series["values"]) != calls or series["steps"][-1] != calls - 1 or series["values"][-1] != 1.0 / calls:
        raise RuntimeError(f"{name}: loss series is wrong: {len(series['values'])} points, last {series['values'][-1:]}")
    if counts != {k: calls for k in KEYS}:
        raise RuntimeError(f"{name}: unexpected counts {counts}")
    values = calls * len(KEYS)
    return {
        "median_us": marks["median_ns"] / 1000, "p90_us": marks["p90_ns"] / 1000,
        "p99_us": marks["p99_ns"] / 1000, "max_us": marks["max_ns"] / 1000,
        "first_call_us": marks["first_call_ns"] / 1000, "timer_us": marks["timer_ns"] / 1000,
        "loop_mean_us": marks["loop_mean_ns"] / 1000,
        "report_loop_s": marks["last_wall"] - marks["first_wall"],
        "latency_s": complete - marks["last_wall"],
        "throughput": values / (complete - marks["first_wall"]),
        "first_seen_s": (first_seen or complete) - marks["first_wall"],
        "journal_bytes": (bench.run_dir(name) / "spool" / "journal.ndjson").stat().st_size,
        "journal": bench.run_dir(name) / "spool" / "journal.ndjson",
        "trace": [(round(t - marks["last_wall"], 2), n) for t, n in trace],
    }


def store_ingest(journal: Path, chunk: int = 8 << 20) -> tuple[float, int]:
    """Seconds for SqlStore.ingest_journal to take the journal in supervisor-sized chunks."""
    from nsml.core.resources import Resources
    from nsml.store.sql.store import open_store

    data = journal.read_bytes()
    with tempfile.TemporaryDirectory(prefix="nsml-bench-ingest-") as tmp:
        store = open_store(f"sqlite:///{tmp}/nsml.db")
        session = store.create_session("alice", "bench", "main.py", "", Resources(1, 1 << 30, 0), "", "", [])
        t0 = time.perf_counter()
        offset = 0
        while offset < len(data):
            piece = data[offset:offset + chunk]
            piece = piece[:piece.rfind(b"\n") + 1]
            offset = store.ingest_journal(session.id, offset, piece)
        elapsed = time.perf_counter() - t0
        points = store.count_points(session.id)
        store.close()
    return elapsed, points


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=150_000, help="report calls per session (2 values each)")
    parser.add_argument("--repeat", type=int, default=3, help="sessions; medians are reported")
    parser.add_argument("--trace", action="store_true", help="print when the counts grew")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between metrics polls")
    parser.add_argument("--db", default=None, help="the server's database (default SQLite; e.g. postgresql+psycopg://…)")
    args = parser.parse_args()

    values = args.calls * len(KEYS)
    print(f"nsml.report(step=i, loss=..., acc=...) in a real session: {args.calls:,} calls x 2 values = "
          f"{values:,} values; {args.repeat} sessions; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; "
          f"load average {os.getloadavg()[0]:.2f}")
    rows = []
    with Bench(server_args=["--db", args.db] if args.db else None) as bench:
        bench.push_dataset("bench")
        project = bench.project("report", ENTRY)
        for i in range(args.repeat):
            row = one_session(bench, project, args.calls, args.poll)
            rows.append(row)
            print(f"  session {i + 1}: call median {row['median_us']:.2f} us, p90 {row['p90_us']:.2f}, "
                  f"p99 {row['p99_us']:.2f}; last report -> queryable {row['latency_s']:.2f} s; "
                  f"{row['throughput']:,.0f} values/s end to end", flush=True)
            if args.trace:
                print("    values queryable at (s after the last report, count):", row["trace"])
        ingest_s, points = store_ingest(rows[-1]["journal"])

    med = lambda k: statistics.median(r[k] for r in rows)
    print(f"\n(a) cost of one report call (median over {len(rows)} sessions of each session's figure)")
    print(f"    median {med('median_us'):.2f} us   p90 {med('p90_us'):.2f} us   p99 {med('p99_us'):.2f} us   "
          f"max {med('max_us'):.0f} us")
    print(f"    first call (opens the journal, starts its thread) {med('first_call_us'):.0f} us; "
          f"timer overhead {med('timer_us'):.2f} us (not subtracted); "
          f"mean over the timed loop {med('loop_mean_us'):.2f} us")
    verdict = "meets" if med("median_us") <= TARGET_CALL_US else "MISSES"
    print(f"    -> {verdict} the {TARGET_CALL_US:.0f} us target")
    print(f"\n(b) last report -> all {values:,} values queryable (GET .../metrics counts complete)")
    lat = [r["latency_s"] for r in rows]
    print(f"    median {statistics.median(lat):.2f} s   max {max(lat):.2f} s   "
          f"(the report loop itself took {med('report_loop_s'):.2f} s; "
          f"first values queryable {med('first_seen_s'):.2f} s after the first report)")
    print(f"    end-to-end throughput {med('throughput'):,.0f} values/s (first report -> complete); "
          f"journal {rows[-1]['journal_bytes'] / 2**20:.1f} MiB")
    verdict = "meets" if statistics.median(lat) <= TARGET_LATENCY_S else "MISSES"
    print(f"    -> {verdict} the {TARGET_LATENCY_S:.0f} s target")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"\nserver side alone: SqlStore.ingest_journal of that journal in 8 MiB chunks (no HTTP): "
          f"{ingest_s:.2f} s, {points / ingest_s:,.0f} values/s")


if __name__ == "__main__":
    main()
