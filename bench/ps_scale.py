"""`nsml ps -a` and `GET /api/sessions` with 10,000 sessions in the store.

(1) `nsml ps -a` as a user runs it: a subprocess, wall time from invoking to exit, its stdout
    a pipe (what a script or `| less` sees) and a pseudo-terminal (what a person sees; the
    terminal is 200 columns wide and its output is read and thrown away as it comes). Also
    `nsml ps -a -j`, and, when the CLI has it, `nsml ps -a --all-rows` (every row).
(2) `GET /api/sessions?all=true` (every session, what the CLI asked for before paging) and,
    when the server pages, `…&limit=50`: time on the client over loopback (the server's share
    of it is all but ~1 ms) and the bytes of the body.

Target: `nsml ps -a` <= 1 s wall. Each figure is the median (min-max) of --repeat runs, after
one warm-up run. The sessions are rows inserted in bulk through the store's tables before the
server starts (ended ones: exited, failed, stopped, so the scheduler leaves them alone), like
bench/web_scale.py.

    python bench/ps_scale.py                  # --sessions 10000 --repeat 5
"""

import argparse
import json
import os
import pty
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import Bench, insert_sessions, nsml_command  # noqa: E402

TTY_COLUMNS = 200


def populate(home: Path, total: int) -> None:
    """`total` ended sessions of three owners on three datasets, a minute apart."""
    from nsml.store.sql import open_store

    store = open_store(f"sqlite:///{home / 'nsml.db'}")
    owners, datasets = ("alice", "bob", "carol"), ("bench", "mnist", "cifar")
    counters: dict[tuple[str, str], int] = {}
    rows = []
    t0 = time.time() - 60 * total
    for i in range(total):
        owner, dataset = owners[i % 3], datasets[(i // 3) % 3]
        counters[owner, dataset] = counters.get((owner, dataset), 0) + 1
        status = ("exited", "failed", "stopped")[i % 3]
        rows.append(dict(
            owner=owner, dataset=dataset, number=counters[owner, dataset], entry="main.py",
            args=f"--lr 0.0{i % 10} --batch {32 * (i % 4 + 1)} --seed {i}", status=status,
            cpus=1.0, memory=1 << 30, gpus=0, gpu_ids="", created=t0 + i * 60, started=t0 + i * 60 + 1,
            ended=t0 + i * 60 + 50, memo=f"ablation {i // 100}" if i % 10 == 0 else "",
            exit_code=1 if status == "failed" else 0,
            error="Traceback (most recent call last):\nValueError: bad batch" if status == "failed" else "",
            image="", summary=json.dumps({"train/loss": 0.1, "train/acc": 0.9}),
            last_values=json.dumps({"step": 999, "train/loss": 0.1, "train/acc": 0.9, "val/loss": 0.12}),
            journal_offset=0, log_offset=0, report_count=1000, kind="normal", source="", source_checkpoint=""))
    insert_sessions(store, rows, counters)
    store.close()


def run_pipe(bench: Bench, args: list[str]) -> tuple[float, int, int]:
    """(wall seconds, exit status, lines of stdout) of `nsml ARGS` with stdout a pipe."""
    t = time.perf_counter()
    proc = subprocess.run([*nsml_command(), *args], cwd=bench.work, env=bench.env, capture_output=True, text=True, timeout=120)
    return time.perf_counter() - t, proc.returncode, proc.stdout.count("\n")


def run_tty(bench: Bench, args: list[str]) -> tuple[float, int, int]:
    """The same with stdout and stderr a pseudo-terminal TTY_COLUMNS wide, read as it comes."""
    master, slave = pty.openpty()
    env = {**bench.env, "COLUMNS": str(TTY_COLUMNS), "LINES": "50", "TERM": "xterm-256color"}
    t = time.perf_counter()
    proc = subprocess.Popen([*nsml_command(), *args], cwd=bench.work, env=env, stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave)
    os.close(slave)
    out = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    proc.wait()
    wall = time.perf_counter() - t
    os.close(master)
    return wall, proc.returncode, out.count(b"\n")


def has_option(bench: Bench, option: str) -> bool:
    return option in subprocess.run([*nsml_command(), "ps", "--help"], env={**bench.env, "COLUMNS": "200"},
                                    capture_output=True, text=True).stdout


def timed(fn, repeat: int) -> dict:
    fn()  # warm-up: the server's caches, the page cache
    runs = [fn() for _ in range(repeat)]
    walls = [r[0] for r in runs]
    return {"median": statistics.median(walls), "min": min(walls), "max": max(walls), "rc": runs[-1][1], "extra": runs[-1][2]}


def http_timed(bench: Bench, path: str, repeat: int) -> dict:
    def once():
        t = time.perf_counter()
        resp = bench.http.get(path)
        resp.raise_for_status()
        return time.perf_counter() - t, resp.status_code, (len(resp.content), resp.headers.get("x-total-count"), len(resp.json()))
    return timed(once, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"ps_scale: {args.sessions} sessions, median (min-max) of {args.repeat}; load {os.getloadavg()[0]:.2f}", flush=True)
    bench = Bench(prefix="nsml-bench-ps-")
    rows = []
    try:
        t = time.perf_counter()
        populate(bench.home, args.sessions)
        bench.start()
        print(f"data in and server up in {time.perf_counter() - t:.1f} s", flush=True)
        rows.append(("python -c pass (floor)", timed(lambda: _floor(bench), args.repeat), "interpreter start-up"))
        cases = [("nsml ps -a", ["ps", "-a"]), ("nsml ps -a -j", ["ps", "-a", "-j"])]
        if has_option(bench, "--all-rows"):
            cases.append(("nsml ps -a --all-rows", ["ps", "-a", "--all-rows"]))
        for label, cli_args in cases:
            for how, runner in (("pipe", run_pipe), ("tty", run_tty)):
                if "-j" in cli_args and how == "tty":
                    continue
                r = timed(lambda: runner(bench, cli_args), args.repeat)  # noqa: B023
                rows.append((f"{label}  [{how}]", r, f"exit {r['rc']}, {r['extra']} lines"))
        paths = ["/api/sessions?all=true"]
        if "x-total-count" in {k.lower() for k in bench.http.get("/api/sessions?all=true&limit=1").headers}:
            paths += ["/api/sessions?all=true&limit=50", "/api/sessions?all=true&limit=50&offset=5000"]
        for path in paths:
            r = http_timed(bench, path, args.repeat)
            size, total, n = r["extra"]
            rows.append((f"GET {path}", r, f"{size / 1e6:.2f} MB, {n} rows" + (f", X-Total-Count {total}" if total else "")))
    finally:
        bench.close()
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':{width}}   median (min-max), s")
    for label, r, note in rows:
        print(f"{label:{width}}   {r['median']:.3f} ({r['min']:.3f}-{r['max']:.3f})   {note}")
    print(f"load {os.getloadavg()[0]:.2f}")


def _floor(bench: Bench) -> tuple[float, int, int]:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], env=bench.env, check=True)
    return time.perf_counter() - t, 0, 0


if __name__ == "__main__":
    main()
