"""The metric path beside its physical limit and its peers: ingest and read of 3 metrics x N steps.

One workload for every system: 3 metrics (loss, acc, lr) x N steps (default N = 100,000, so
300,000 values), and with --big 3 x 1,000,000 (3,000,000 values). Printed side by side:

1. Physical baselines, from Python values already in memory (no parsing):
   - an append-only struct file per series (records <q d d>: step, walltime, value), written
     with struct, the 100k-point series read back with one read() into three Python lists
     (strided memoryview casts: struct.iter_unpack and zip take ~8x as long);
   - SQLite executemany into a plain points(series_id, step, walltime, value) table with an
     index on (series_id, step), WAL and synchronous=NORMAL as our store's SQLite; the series
     read back with one SELECT;
   - with a PostgreSQL database, the same table loaded with COPY (psycopg write_row).
2. Ours, on SQLite and (--db/--postgres) on PostgreSQL:
   (a) the store's ingest alone: the journal is written by the library itself (a child process
       calling nsml.report(step=i, loss=..., acc=..., lr=...) N times with NSML_SPOOL set, so
       its bytes are exactly what a session writes), then SqlStore.ingest_journal takes it in
       the supervisor's 8 MiB chunks (cut at a newline). Values/s and seconds until the last
       chunk is committed, i.e. queryable. A user, dataset and session are made through the
       store's methods; the bench never touches the store's tables;
   (b) the full read of the `loss` series: GET /api/sessions/alice/bench/N/metrics/loss on a
       real server (bench/_harness.Bench) over that database. The time is the request's wall
       time on loopback as the client sees it (the body fully received, not JSON-decoded); the
       server's share is all but ~1 ms of it. Bytes as received. Also the dashboard's graph of
       that session (GET /api/web/graph, 3 series, 1000 buckets);
   (c) with --big, the same at 3,000,000 values (a 1,000,000-point series);
   (d) the server process's RSS after the reads (VmRSS) and its peak (VmHWM), /proc/PID/status.
3. Peers, each in a virtualenv of its own under the temp folder (made and installed with pip on
   first use; never imported here), at N steps only:
   - W&B offline (wandb.init(mode="offline"), run.log of the 3 metrics per step, run.finish());
     offline W&B has no query API, so its "read" is a scan of the run's .wandb file (LevelDB log
     of protobuf records) for the loss history;
   - Aim (Run.track of the 3 metrics per step, close, index the run so readers see it; read:
     a read-only Run's get_metric("loss"), its steps, values and times as lists);
   - MLflow's SQLite store through its client (log_batch of 999 metrics, get_metric_history).
   For a peer, "client s" is its logging calls plus finish/close, and "to queryable" the same
   plus whatever else it needs before a reader sees the values (Aim: indexing).

    python bench/metric_path.py                       # SQLite, peers, N = 100,000
    python bench/metric_path.py --postgres --no-peers # also on a temporary PostgreSQL (tests/postgres.py)
    python bench/metric_path.py --db postgresql+psycopg://u:p@host/db --big
    python bench/metric_path.py --steps 20000 --no-peers   # a quick look

The load average is printed at the start and the end: the machine may be shared.
"""

import argparse
import inspect
import json
import math
import os
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "bench"))

import httpx  # noqa: E402

from _harness import Bench, journal_reports  # noqa: E402

KEYS = ("loss", "acc", "lr")
READ_KEY = "loss"
CHUNK = 8 << 20  # what the supervisor posts at most
BIG_STEPS = 1_000_000
NL = b"\n"
OWNER, DATASET = "alice", "bench"


def curves(i: int, n: int) -> tuple[float, float, float]:
    """loss, acc, lr at step i of n: the same everywhere (its source is prepended to every child script)."""
    return 1.0 / (i + 1), i / n, 0.1 * 0.5 ** (i * 10 // n)


CURVES = inspect.getsource(curves)

# The journal, written by the library under test (NSML_SPOOL set, so report() goes to the spool).
GENERATE = CURVES + r"""
import json, sys, time
import nsml
n = int(sys.argv[1])
report = nsml.report
t0 = time.perf_counter()
for i in range(n):
    loss, acc, lr = curves(i, n)
    report(step=i, loss=loss, acc=acc, lr=lr)
t1 = time.perf_counter()
try:
    from nsml.client import journal
    journal.flush()
except Exception:
    pass  # atexit flushes
t2 = time.perf_counter()
print(json.dumps({"loop_s": t1 - t0, "flush_s": t2 - t1, "file": nsml.__file__}))
"""

WANDB = CURVES + r"""
import glob, json, os, struct, sys, time
n, d, reads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR=d, WANDB_CONSOLE="off")
import wandb
from wandb.proto import wandb_internal_pb2 as pb
run = wandb.init(project="bench", dir=d, mode="offline")
t0 = time.perf_counter()
for i in range(n):
    loss, acc, lr = curves(i, n)
    run.log({"loss": loss, "acc": acc, "lr": lr}, step=i)
t1 = time.perf_counter()
run.finish()
t2 = time.perf_counter()

def records(path):  # the .wandb file: a 7-byte header, then a LevelDB log of 32 KiB blocks
    data = open(path, "rb").read()
    pos, block, parts = 7, 32768, []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        pos += 7
        if kind == 0 and length == 0:
            pos += left - 7
            continue
        piece = data[pos:pos + length]
        pos += length
        if kind == 1:
            yield piece
        elif kind == 2:
            parts = [piece]
        elif kind == 3:
            parts.append(piece)
        elif kind == 4:
            parts.append(piece)
            yield b"".join(parts)

def read(path):
    steps, values = [], []
    for raw in records(path):
        rec = pb.Record()
        rec.ParseFromString(raw)
        if rec.WhichOneof("record_type") != "history":
            continue
        value = step = None
        for item in rec.history.item:
            key = item.key or "/".join(item.nested_key)
            if key == "loss":
                value = json.loads(item.value_json)
            elif key == "_step":
                step = json.loads(item.value_json)
        if value is not None:
            steps.append(step)
            values.append(value)
    return steps, values

path = glob.glob(os.path.join(d, "wandb", "offline-run-*", "run-*.wandb"))[0]
times = []
for _ in range(reads):
    t = time.perf_counter()
    steps, values = read(path)
    times.append(time.perf_counter() - t)
assert len(values) == n and steps[-1] == n - 1, (len(values), steps[-1:])
print(json.dumps({"version": wandb.__version__, "client_s": t2 - t0, "queryable_s": t2 - t0, "log_s": t1 - t0,
                  "finish_s": t2 - t1, "read_s": times, "bytes": os.path.getsize(path)}))
"""

AIM = CURVES + r"""
import json, os, sys, time
n, d, reads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
from aim import Repo, Run
from aim.__version__ import __version__
from aim.sdk.index_manager import RepoIndexManager
from aim.storage.context import Context
repo = Repo.from_path(d, init=True)
run = Run(repo=repo, experiment="bench")
run_hash = run.hash
t0 = time.perf_counter()
for i in range(n):
    loss, acc, lr = curves(i, n)
    run.track({"loss": loss, "acc": acc, "lr": lr}, step=i)
t1 = time.perf_counter()
run.close()
t2 = time.perf_counter()
RepoIndexManager.get_index_manager(repo).index(run_hash)  # until indexed, readers do not see the run
t3 = time.perf_counter()
times = []
for _ in range(reads):
    t = time.perf_counter()
    metric = Run(run_hash, repo=repo, read_only=True).get_metric("loss", Context({}))
    steps, (values, walltimes) = metric.data.view(["val", "time"]).items_list()
    times.append(time.perf_counter() - t)
assert len(values) == n and steps[-1] == n - 1, (len(values), steps[-1:])
size = sum(f.stat().st_size for f in __import__("pathlib").Path(d).rglob("*") if f.is_file())
print(json.dumps({"version": __version__, "client_s": t2 - t0, "queryable_s": t3 - t0, "log_s": t1 - t0,
                  "finish_s": t2 - t1, "index_s": t3 - t2, "read_s": times, "bytes": size}))
"""

MLFLOW = CURVES + r"""
import json, os, sys, time
n, d, reads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=f"sqlite:///{d}/mlflow.db")
run_id = client.create_run(client.create_experiment("bench")).info.run_id
now = int(time.time() * 1000)
t0 = time.perf_counter()
batch = []
for i in range(n):
    loss, acc, lr = curves(i, n)
    batch += [Metric("loss", loss, now + i, i), Metric("acc", acc, now + i, i), Metric("lr", lr, now + i, i)]
    if len(batch) >= 999:  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=batch)
        batch = []
if batch:
    client.log_batch(run_id, metrics=batch)
t1 = time.perf_counter()
times = []
for _ in range(reads):
    t = time.perf_counter()
    history = client.get_metric_history(run_id, "loss")
    times.append(time.perf_counter() - t)
assert len(history) == n, len(history)
print(json.dumps({"version": mlflow.__version__, "client_s": t1 - t0, "queryable_s": t1 - t0, "log_s": t1 - t0,
                  "read_s": times, "bytes": os.path.getsize(os.path.join(d, "mlflow.db"))}))
"""

PEERS = {"wandb": ("W&B offline", "wandb", WANDB), "aim": ("Aim", "aim", AIM), "mlflow": ("MLflow SQLite (client)", "mlflow", MLFLOW)}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (the peak) of a process, in MB."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024 / 1e6
    except OSError:
        pass
    return out


def ms_summary(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"first": ms[0], "median": statistics.median(ms[1:] or ms), "all": ms}


def make_series(n: int) -> dict[str, tuple[list, list, list]]:
    t0 = 1.7e9
    steps = list(range(n))
    walls = [t0 + i * 0.001 for i in steps]
    cols = list(zip(*(curves(i, n) for i in steps)))
    return {k: (steps, walls, list(cols[j])) for j, k in enumerate(KEYS)}


# -- 1. physical baselines ------------------------------------------------------------------
def struct_file(tmp: Path, n: int, reads: int) -> dict:
    series = make_series(n)
    rec = struct.Struct("<qdd")
    folder = tmp / f"struct-{n}"
    folder.mkdir()
    t = time.perf_counter()
    for key, (steps, walls, vals) in series.items():
        with open(folder / f"{key}.bin", "ab") as f:
            f.write(b"".join(map(rec.pack, steps, walls, vals)))
    write_s = time.perf_counter() - t
    times = []
    for _ in range(reads):
        t = time.perf_counter()
        with open(folder / f"{READ_KEY}.bin", "rb") as f:
            data = f.read()
        # the <q d d> records as 8-byte words: every third from 0 (steps), 1 (walltimes), 2 (values)
        words_q, words_d = memoryview(data).cast("q"), memoryview(data).cast("d")
        steps, walls, vals = words_q[0::3].tolist(), words_d[1::3].tolist(), words_d[2::3].tolist()
        times.append(time.perf_counter() - t)
    assert len(vals) == n and vals[-1] == 1.0 / n
    shutil.rmtree(folder)
    return {"queryable_s": write_s, "read": ms_summary(times)}


def point_rows(n: int) -> list[tuple]:
    series = make_series(n)
    cols = [series[k] for k in KEYS]
    return [(sid + 1, i, cols[sid][1][i], cols[sid][2][i]) for i in range(n) for sid in range(len(KEYS))]


def sqlite_executemany(tmp: Path, n: int, reads: int) -> dict:
    rows = point_rows(n)
    path = tmp / f"baseline-{n}.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE points (series_id INTEGER NOT NULL, step INTEGER, walltime REAL, value REAL)")
    conn.execute("CREATE INDEX ix_points ON points (series_id, step)")
    conn.commit()
    t = time.perf_counter()
    with conn:
        conn.executemany("INSERT INTO points VALUES (?, ?, ?, ?)", rows)
    write_s = time.perf_counter() - t
    del rows
    times = []
    for _ in range(reads):
        t = time.perf_counter()
        got = conn.execute("SELECT step, walltime, value FROM points WHERE series_id = ? ORDER BY step", (1,)).fetchall()
        times.append(time.perf_counter() - t)
    assert len(got) == n and got[-1][2] == 1.0 / n
    conn.close()
    for f in tmp.glob(f"baseline-{n}.db*"):
        f.unlink()
    return {"queryable_s": write_s, "read": ms_summary(times)}


def libpq_dsn(url: str) -> str:
    """postgresql+psycopg://u:p@h:port/db -> a URL psycopg accepts."""
    return "postgresql://" + url.split("://", 1)[1]


def postgres_copy(url: str, n: int, reads: int) -> dict:
    import psycopg

    rows = point_rows(n)
    table = f"nsml_bench_points_{os.getpid()}"
    with psycopg.connect(libpq_dsn(url), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE TABLE {table} (series_id INTEGER NOT NULL, step BIGINT, walltime DOUBLE PRECISION, "
                     "value DOUBLE PRECISION)")
        conn.execute(f"CREATE INDEX ix_{table} ON {table} (series_id, step)")
        try:
            t = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY {table} (series_id, step, walltime, value) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            write_s = time.perf_counter() - t
            del rows
            times = []
            for _ in range(reads):
                t = time.perf_counter()
                got = conn.execute(f"SELECT step, walltime, value FROM {table} WHERE series_id = %s ORDER BY step", (1,)).fetchall()
                times.append(time.perf_counter() - t)
            assert len(got) == n and got[-1][2] == 1.0 / n
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return {"queryable_s": write_s, "read": ms_summary(times)}


# -- 2. ours --------------------------------------------------------------------------------
def make_journal(tmp: Path, n: int) -> tuple[bytes, dict]:
    """N reports written by the library itself into a spool; the journal's bytes."""
    from nsml.core import spool

    folder = tmp / f"spool-{n}"
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NSML_")}
    env["NSML_SPOOL"] = str(folder)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", GENERATE, str(n)], env=env, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"writing the journal failed:\n{out.stdout}{out.stderr}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    data = (folder / spool.JOURNAL).read_bytes()
    shutil.rmtree(folder)
    reports = journal_reports(data)
    if reports != n:
        raise RuntimeError(f"the journal holds {reports} reports, not {n}")
    info["bytes"] = len(data)
    return data, info


def ingest(store, session_id: int, data: bytes) -> float:
    """Seconds for the store to take the journal in supervisor-sized chunks (cut at a newline)."""
    t = time.perf_counter()
    offset = 0
    while offset < len(data):
        piece = data[offset:offset + CHUNK]
        piece = piece[:piece.rfind(b"\n") + 1]
        new = store.ingest_journal(session_id, offset, piece)
        if new <= offset:
            raise RuntimeError(f"ingest_journal did not advance past {offset}")
        offset = new
    return time.perf_counter() - t


def populate(url: str, journals: list[tuple[bytes, int]]) -> tuple[list[str], list[float]]:
    """One session per (journal, repeat), each ingested and then marked exited; their names and
    ingest seconds."""
    from nsml.core.errors import AlreadyExists
    from nsml.core.resources import Resources
    from nsml.core.states import Status
    from nsml.store.sql import open_store

    store = open_store(url)
    try:
        store.add_user(OWNER)
        try:
            store.put_dataset(DATASET, OWNER, "metric_path bench", False, [], force=False)
        except AlreadyExists:
            pass
        names, seconds = [], []
        for data, repeat in journals:
            for _ in range(repeat):
                session = store.create_session(OWNER, DATASET, "main.py", "", Resources(1, 1 << 30, 0), "", "", [])
                seconds.append(ingest(store, session.id, data))
                names.append(session.name)
                store.move_session(session.id, Status.RUNNING, started=time.time())  # so the server's
                store.move_session(session.id, Status.EXITED, ended=time.time(), exit_code=0)  # scheduler leaves it
                print(f"    {session.name}: {data.count(NL):,} journal lines ingested in {seconds[-1]:.2f} s", flush=True)
    finally:
        store.close()
    return names, seconds


def handler_read(url: str, name: str, reads: int) -> dict:
    """The read's server time without HTTP: store.read_series and the JSON body the route
    streams (nsml/server/api/metrics.py _json), built whole, in this process; ms."""
    from nsml.server.api.metrics import _json
    from nsml.store.sql import open_store

    store = open_store(url)
    try:
        session = store.get_session(name)
        times = []
        for _ in range(reads):
            t = time.perf_counter()
            body = b"".join(_json(READ_KEY, store.read_series(session.id, READ_KEY)))
            times.append((time.perf_counter() - t) * 1000)
        json.loads(body)  # and it is JSON
    finally:
        store.close()
    return ms_summary([t / 1000 for t in times])


def timed_get(http: httpx.Client, path: str, reads: int) -> tuple[dict, httpx.Response]:
    times = []
    for _ in range(reads):
        t = time.perf_counter()
        resp = http.get(path)
        times.append(time.perf_counter() - t)
        resp.raise_for_status()
    return ms_summary(times), resp


def read_series(bench: Bench, name: str, n: int, reads: int) -> dict:
    timing, resp = timed_get(bench.http, f"/api/sessions/{name}/metrics/{READ_KEY}", reads)
    body = resp.json()
    if len(body["values"]) != n or body["steps"][-1] != n - 1 or not math.isclose(body["values"][-1], 1.0 / n, rel_tol=1e-6):
        raise RuntimeError(f"{name}: the {READ_KEY} series is wrong: {len(body['values'])} points, last {body['values'][-1:]}")
    if body["values"][-1] != 1.0 / n:
        print(f"    note: the last {READ_KEY} value reads back as {body['values'][-1]!r}, not {1.0 / n!r}", flush=True)
    rss = proc_status(bench.proc.pid)
    graph, gresp = timed_get(bench.http, f"/api/web/graph?s={name}&buckets=1000", reads)
    gbody = gresp.json()
    if sorted(gbody["series"].get(name, {})) != sorted(KEYS):
        raise RuntimeError(f"{name}: the graph has {list(gbody['series'].get(name, {}))}")
    return {"read": timing, "bytes": len(resp.content), "wire": resp.num_bytes_downloaded, "rss_after": rss.get("VmRSS"),
            "graph": graph, "graph_wire": gresp.num_bytes_downloaded}


def bench_ours(label: str, url: str | None, tmp: Path, journals: dict, args) -> dict:
    print(f"\n{label}:", flush=True)
    bench = Bench(prefix="nsml-bench-metric-", sandbox="none", server_args=["--db", url] if url else None)
    try:
        db_url = url or f"sqlite:///{bench.home / 'nsml.db'}"
        plan = [(journals[args.steps][0], args.repeat)]
        if args.big:
            plan.append((journals[BIG_STEPS][0], 1))
        names, seconds = populate(db_url, plan)
        row = {"system": label, "ingest_s": seconds[:args.repeat], "client_s": journals[args.steps][1]["loop_s"]
               + journals[args.steps][1]["flush_s"]}
        row["queryable_s"] = min(row["ingest_s"])
        if url is None:
            row["db_mb"] = sum(f.stat().st_size for f in bench.home.glob("nsml.db*")) / 1e6
        bench.start()
        counts = bench.get(f"/api/sessions/{names[0]}/metrics")
        if sorted(counts) != sorted(KEYS) or any(isinstance(c, int) and c != args.steps for c in counts.values()):
            raise RuntimeError(f"{names[0]}: counts {counts}")
        row["rss_start"] = proc_status(bench.proc.pid).get("VmRSS")
        row.update(read_series(bench, names[0], args.steps, args.reads))
        row["handler"] = handler_read(db_url, names[0], args.reads)
        if args.big:
            row["big_queryable_s"] = seconds[-1]
            big = read_series(bench, names[-1], BIG_STEPS, args.big_reads)
            row["big"] = big
        row["peak_rss"] = proc_status(bench.proc.pid).get("VmHWM")
        print(f"    read of {args.steps:,} points: first {row['read']['first']:.0f} ms, median {row['read']['median']:.0f} ms, "
              f"{row['bytes'] / 1e6:.1f} MB (server time without HTTP: median {row['handler']['median']:.0f} ms); "
              f"graph {row['graph']['median']:.0f} ms; server RSS {row['rss_start']:.0f} MB at "
              f"start, {row['rss_after']:.0f} MB after the read", flush=True)
        if args.big:
            print(f"    read of {BIG_STEPS:,} points: first {big['read']['first']:.0f} ms, median {big['read']['median']:.0f} ms, "
                  f"{big['bytes'] / 1e6:.1f} MB; graph {big['graph']['median']:.0f} ms; RSS after {big['rss_after']:.0f} MB, "
                  f"peak {row['peak_rss']:.0f} MB", flush=True)
    finally:
        bench.close()
    return row


# -- 3. peers -------------------------------------------------------------------------------
def peer_python(venv: Path, package: str, install_timeout: float) -> tuple[Path | None, str]:
    python = venv / "bin" / "python"
    check = lambda: subprocess.run([str(python), "-c", f"import {package}"], capture_output=True).returncode == 0  # noqa: E731
    if python.exists() and check():
        return python, ""
    print(f"    installing {package} into {venv} (pip, at most {install_timeout:.0f} s) ...", flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
        subprocess.run([str(python), "-m", "pip", "install", "-q", package], check=True, capture_output=True,
                       timeout=install_timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return None, f"could not be installed ({type(exc).__name__})"
    return (python, "") if check() else (None, "installed but does not import")


def bench_peer(key: str, tmp: Path, args) -> dict:
    label, package, script = PEERS[key]
    venv = Path(args.peer_venvs) / f"nsml-bench-{package}-venv"
    python, why = peer_python(venv, package, args.install_timeout)
    if python is None:
        print(f"\n{label}: left out: {package} {why}", flush=True)
        return {"system": label, "skipped": why}
    folder = tmp / f"peer-{key}"
    folder.mkdir()
    print(f"\n{label} ({venv}): {args.steps:,} steps ...", flush=True)
    try:
        out = subprocess.run([str(python), "-c", script, str(args.steps), str(folder), str(args.reads)],
                             cwd=folder, capture_output=True, text=True, timeout=args.peer_timeout)
    except subprocess.TimeoutExpired:
        print(f"    left out: over {args.peer_timeout} s", flush=True)
        return {"system": label, "skipped": f"over {args.peer_timeout} s"}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if out.returncode != 0:
        print(f"    failed:\n{out.stderr[-2000:]}", flush=True)
        return {"system": label, "skipped": "failed (see above)"}
    res = json.loads(out.stdout.strip().splitlines()[-1])
    row = {"system": f"{label} {res['version']}", "client_s": res["client_s"], "queryable_s": res["queryable_s"],
           "read": ms_summary(res["read_s"]), "stored_bytes": res["bytes"]}
    extra = ", ".join(f"{k[:-2]} {res[k]:.2f} s" for k in ("log_s", "finish_s", "index_s") if k in res)
    print(f"    {extra}; read first {row['read']['first']:.0f} ms, median {row['read']['median']:.0f} ms", flush=True)
    return row


# -- table ----------------------------------------------------------------------------------
def fmt(x, spec: str) -> str:
    return "—" if x is None else format(x, spec)


def print_table(rows: list[dict], args) -> None:
    values = args.steps * len(KEYS)
    cols = [("system", 34), ("client s", 9), ("to queryable s", 15), ("values/s", 11), (f"read {args.steps // 1000}k ms", 12),
            ("read MB", 8), ("graph ms", 9), ("RSS MB", 7)]
    if args.big:
        cols += [(f"{BIG_STEPS * 3 // 1_000_000}M ingest s", 12), (f"read {BIG_STEPS // 1_000_000}M ms", 11), ("RSS MB", 7),
                 ("peak RSS MB", 12)]
    print(f"\n3 metrics x {args.steps:,} steps = {values:,} values; read: the {args.steps:,}-point '{READ_KEY}' series "
          f"(first read / median of the rest in the ms columns: median)")
    print(" ".join(f"{name:>{w}}" if i else f"{name:<{w}}" for i, (name, w) in enumerate(cols)))
    for r in rows:
        if r.get("skipped"):
            print(f"{r['system']:<34} left out: {r['skipped']}")
            continue
        q = r.get("queryable_s")
        cells = [r["system"], fmt(r.get("client_s"), ".2f"), fmt(q, ".3f"), fmt(values / q if q else None, ",.0f"),
                 fmt(r.get("read", {}).get("median"), ".1f"), fmt(r["bytes"] / 1e6 if r.get("bytes") else None, ".2f"),
                 fmt(r.get("graph", {}).get("median"), ".1f"), fmt(r.get("rss_after"), ".0f")]
        if args.big:
            big = r.get("big") or {}
            cells += [fmt(r.get("big_queryable_s"), ".2f"), fmt(big.get("read", {}).get("median"), ".0f"),
                      fmt(big.get("rss_after"), ".0f"), fmt(r.get("peak_rss"), ".0f")]
        print(" ".join(f"{c:>{w}}" if i else f"{c:<{w}}" for i, (c, (_, w)) in enumerate(zip(cells, cols))))
    print("""
client s: the logging calls plus flush/finish/close (ours: nsml.report x N in a child process and the
  journal's last write; baselines: none). to queryable s: ours, the store's ingest of the journal alone
  (8 MiB chunks, the min of --repeat), the report loop and shipping excluded (bench/report_overhead.py
  measures those); baselines: the write of Python values already in memory; peers: their whole path
  until a reader sees the values. read ms: ours, GET .../metrics/loss wall time on loopback (body
  received, not decoded); baselines and peers, in process into Python lists. graph ms: GET
  /api/web/graph of that one session (3 series, 1000 buckets). RSS MB: the server's VmRSS after the
  reads; peak RSS: its VmHWM at the end.""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100_000, help="steps per metric (3 metrics)")
    ap.add_argument("--big", action="store_true", help=f"also {BIG_STEPS:,} steps (3M values): ingest, read, server RSS")
    ap.add_argument("--db", default=None, help="also run ours on this PostgreSQL database (postgresql+psycopg://…)")
    ap.add_argument("--postgres", action="store_true", help="also run ours on a temporary PostgreSQL (tests/postgres.py)")
    ap.add_argument("--no-sqlite", action="store_true", help="ours on PostgreSQL only")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--peers", default="wandb,aim,mlflow", help="comma-separated: wandb, aim, mlflow")
    ap.add_argument("--peer-venvs", default=tempfile.gettempdir(), help="where the peers' virtualenvs are (nsml-bench-PKG-venv)")
    ap.add_argument("--install-timeout", type=float, default=300, help="seconds a peer's pip install may take")
    ap.add_argument("--peer-timeout", type=int, default=900, help="seconds a peer's run may take")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="ingests of the N-step journal (sessions); min reported")
    ap.add_argument("--reads", type=int, default=6, help="reads of the N-point series: the first, and the median of the rest")
    ap.add_argument("--big-reads", type=int, default=2, help="reads of the 1M-point series")
    args = ap.parse_args()
    if args.no_sqlite and not (args.db or args.postgres):
        ap.error("--no-sqlite needs --db or --postgres")

    import nsml

    print(f"metric_path: 3 metrics x {args.steps:,} steps" + (f", and x {BIG_STEPS:,} (--big)" if args.big else "")
          + f"; {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}")
    print(f"nsml from {Path(nsml.__file__).parent}")
    print(f"load average at the start: {loadavg()}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="nsml-bench-metric-path-"))
    pg = pg_folder = None
    rows = []
    try:
        pg_url = args.db
        if args.postgres:
            from tests import postgres

            pg_folder = Path(tempfile.mkdtemp(prefix="nsml-pg-"))  # not under a 0700 folder: the postgres user reads it
            pg = postgres.start(pg_folder)
            pg_url = pg.new_database()
        if pg_url:
            import psycopg

            with psycopg.connect(libpq_dsn(pg_url)) as conn:
                print(f"PostgreSQL: {conn.execute('SHOW server_version').fetchone()[0]}"
                      + (" (temporary cluster, fsync off, as tests/postgres.py starts it)" if pg else ""), flush=True)

        if not args.no_baselines:
            print("\nphysical baselines ...", flush=True)
            sizes = [args.steps] + ([BIG_STEPS] if args.big else [])
            for label, fn in [("struct file (append-only)", lambda n, r: struct_file(tmp, n, r)),
                              ("SQLite executemany", lambda n, r: sqlite_executemany(tmp, n, r))] + (
                    [("PostgreSQL COPY", lambda n, r: postgres_copy(pg_url, n, r))] if pg_url else []):
                row = {"system": label}
                for n in sizes:
                    res = fn(n, args.reads if n == args.steps else args.big_reads)
                    if n == args.steps:
                        row.update(res)
                    else:
                        row["big_queryable_s"] = res["queryable_s"]
                        row["big"] = res
                print(f"    {label}: {row['queryable_s']:.3f} s to write, read {row['read']['median']:.1f} ms"
                      + (f"; 3M: {row['big_queryable_s']:.2f} s, read {row['big']['read']['median']:.0f} ms" if args.big else ""),
                      flush=True)
                rows.append(row)

        print("\nwriting the journals with nsml.report ...", flush=True)
        journals = {args.steps: make_journal(tmp, args.steps)}
        if args.big:
            journals[BIG_STEPS] = make_journal(tmp, BIG_STEPS)
        for n, (data, info) in journals.items():
            print(f"    {n:,} reports: {info['bytes'] / 2**20:.1f} MiB, report loop {info['loop_s']:.2f} s, "
                  f"last write {info['flush_s']:.2f} s", flush=True)

        if not args.no_sqlite:
            rows.append(bench_ours("ours, SQLite", None, tmp, journals, args))
        if pg_url:
            rows.append(bench_ours("ours, PostgreSQL", pg_url, tmp, journals, args))
        del journals

        if not args.no_peers:
            for key in [p.strip() for p in args.peers.split(",") if p.strip()]:
                if key not in PEERS:
                    ap.error(f"unknown peer {key!r}; choose from {', '.join(PEERS)}")
                rows.append(bench_peer(key, tmp, args))
        else:
            print("\npeers: left out (--no-peers)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg_folder, ignore_errors=True)
    print_table(rows, args)
    if args.big and not args.no_peers:
        print("  peers are run at --steps only (W&B and Aim at 1M steps take many minutes here).")
    print(f"\nload average at the end: {loadavg()}")


if __name__ == "__main__":
    main()
