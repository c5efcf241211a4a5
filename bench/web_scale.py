"""The web dashboard at scale, ours and MLflow's on the same data.

(1) The sessions list with 10,000 sessions in the store: GET /api/web/sessions (the list
    page's JSON twin), with and without a search term, the older /api/sessions?all=true&last=50,
    and store.search_sessions called directly. Target: <= 300 ms server time.
(2) The overlaid graph of 50 sessions x 3 metrics x 100,000 steps: GET /api/web/graph for the
    150 series, downsampled on the server (gzipped, level 1, as browsers accept it), what it
    costs the store (one store.downsampled_many call, as the route makes), and 150
    store.downsampled_series calls for comparison. Target: <= 2 MB transferred and <= 200 ms
    server time.
(3) MLflow (installed in a separate virtualenv, never imported here): the same runs in its
    default SQLite backend behind `mlflow server`, timed through the REST calls its UI makes:
    POST /ajax-api/2.0/mlflow/runs/search (the runs table) and, once per metric key,
    GET /ajax-api/2.0/mlflow/metrics/get-history-bulk-interval (the charts).
(4) The runs table (bench/_runs_table.py): 10,000 sessions x 20 parameters x 20 metric series,
    GET /api/runs 20 + 20 columns wide sorted by a metric, on SQLite and PostgreSQL
    (--runs-table), and queries (q=); beside MLflow's runs/search (order_by a metric, filter)
    on the same runs unless --no-mlflow. Target: <= 300 ms server time.

Times are measured by the client over loopback (a request's wall time; the server's share of
it is all but ~1 ms). Bytes are the response body as sent (neither server compresses); the
gzip column is what a gzip-encoding server would send instead.

    python bench/web_scale.py                     # --sessions 10000 --graph-sessions 50 --steps 100000
    python bench/web_scale.py --mlflow-steps 20000 --mlflow-venv /tmp/mlflow-venv
    python bench/web_scale.py --no-mlflow --steps 20000      # a quick look
    python bench/web_scale.py --no-mlflow --postgres         # ours on SQLite and on a temporary PostgreSQL
    python bench/web_scale.py --no-mlflow --postgres --no-sqlite --no-list --runs-table none   # PG graph only
    python bench/web_scale.py --no-mlflow --db postgresql+psycopg://u:p@host/db --no-sqlite

--postgres starts a throwaway PostgreSQL cluster as bench/metric_path.py and the tests do
(tests/postgres.py: Debian's package, fsync off); --db names a database of your own (it gets
the data added, so use an empty one). Ours is then measured on each database in turn, the same
data loaded the same way, with the server started on that database (NSML_DB_URL).

Data goes in fast but through the real paths where it matters: the 50 graph sessions are
created by the store and their journals ingested in the supervisor's 8 MiB chunks (which also
rolls up the blocks the graph reads); the other sessions are rows inserted in bulk. MLflow's
runs are created by its client, then copied in SQL (10,000 runs through the client take ~11
minutes here); its metric points are inserted in SQL into its `metrics` and `latest_metrics`
tables (log_batch manages ~4,000 points/s here: 15 M points would take an hour), or with
--mlflow-load client through log_batch.
"""

import argparse
import contextlib
import gzip
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import Bench, insert_sessions, timed  # noqa: E402
from bench._runs_table import bench_runs_table  # noqa: E402

KEYS = ("train/loss", "train/acc", "val/loss")
CHUNK = 8 << 20  # what the supervisor posts at most


def value(key: str, session: int, step: int, steps: int) -> float:
    """The same deterministic curves for both systems, with one spike per session."""
    t = step / steps
    if step == (session * 7919) % steps:
        return 50.0
    if key == "train/acc":
        return 1 - math.exp(-5 * t) * (0.9 + 0.05 * math.sin(step / 37 + session))
    base = math.exp(-3 * t) + 0.02 * math.sin(step / 11 + session) + 0.01 * session / 50
    return base * (1.1 if key == "val/loss" else 1.0)


def load() -> float:
    return os.getloadavg()[0]


def body_sizes(resp: httpx.Response) -> tuple[int, int]:
    resp.raise_for_status()
    return len(resp.content), len(gzip.compress(resp.content, 6))


# -- our side ----------------------------------------------------------------------------------
def populate_ours(url: str, total: int, graph: int, steps: int) -> tuple[list[str], dict]:
    """Sessions in the server's database (`url`) before the server starts; returns the graph
    sessions' names and ingest figures."""
    from nsml.core.entities import FileEntry
    from nsml.core.resources import Resources
    from nsml.core.states import Status
    from nsml.store.sql import open_store

    store = open_store(url)
    store.put_dataset("bench", "alice", "web_scale data", False, [], force=False)
    owners, datasets = ("alice", "bob", "carol"), ("bench", "mnist", "cifar")
    counters: dict[tuple[str, str], int] = {}
    rows = []
    t0 = time.time() - 86400 * 30
    for i in range(total - graph):
        owner, dataset = owners[i % 3], datasets[(i // 3) % 3]
        counters[owner, dataset] = counters.get((owner, dataset), 0) + 1
        rows.append(dict(
            owner=owner, dataset=dataset, number=counters[owner, dataset], entry="main.py",
            args=f"--lr 0.0{i % 10} --batch {32 * (i % 4 + 1)} --seed {i}", status=("exited", "failed", "stopped")[i % 3],
            cpus=1.0, memory=1 << 30, gpus=0, gpu_ids="", created=t0 + i * 60, started=t0 + i * 60 + 1,
            ended=t0 + i * 60 + 50, memo=f"ablation {i // 100}" if i % 10 == 0 else "", exit_code=0, error="",
            image="", summary=json.dumps({"train/loss": 0.1, "train/acc": 0.9}),
            last_values=json.dumps({"step": 999, "train/loss": 0.1, "train/acc": 0.9, "val/loss": 0.12}),
            journal_offset=0, log_offset=0, report_count=1000, kind="normal", source="", source_checkpoint=""))
    insert_sessions(store, rows, counters)
    names, ingest_s, values = [], 0.0, 0
    for g in range(graph):
        session = store.create_session("alice", "bench", "main.py", f"--lr 0.0{g % 10} --batch {32 * (g % 4 + 1)} --seed {g}",
                                       Resources(1, 1 << 30, 0), "", "", [FileEntry("main.py", 1, "0" * 64)])
        names.append(session.name)
        lines = []
        for step in range(steps):
            vals = ",".join(f'"{k}":{value(k, g, step, steps)!r}' for k in KEYS)
            lines.append(f'{{"k":"m","w":{1.7e9 + step * 0.05:.3f},"step":{step},"v":{{{vals}}}}}\n')
        data = "".join(lines).encode()
        t = time.perf_counter()
        offset = 0
        while offset < len(data):
            end = data.rfind(b"\n", offset, offset + CHUNK) + 1
            offset = store.ingest_journal(session.id, offset, data[offset:end])
        ingest_s += time.perf_counter() - t
        values += steps * len(KEYS)
        store.move_session(session.id, Status.RUNNING, started=time.time())
        store.move_session(session.id, Status.EXITED, ended=time.time(), exit_code=0)
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:  # what autovacuum would do after a bulk load, now
            conn.exec_driver_sql("ANALYZE")
    store.close()
    return names, {"ingest_s": ingest_s, "values": values}


def bench_ours(args, bench: Bench, url: str, names: list[str], ours: str = "ours") -> list[tuple]:
    """Our rows, labelled `ours` ("ours" on SQLite, "ours/PG" on PostgreSQL)."""
    from nsml.store.sql import open_store

    rows = []
    store = open_store(url)
    http = bench.http
    if not args.no_list:
        r = timed(lambda: store.search_sessions(limit=50), args.repeat)
        rows.append(("list", f"{ours}: store.search_sessions(limit=50)", r, None))
        r = timed(lambda: store.search_sessions(q="lr 0.03", limit=50), args.repeat)
        rows.append(("list", f"{ours}: store.search_sessions(q='lr 0.03')", r, None))
        for label, path in ((f"{ours}: GET /api/web/sessions?limit=50", "/api/web/sessions?limit=50"),
                            (f"{ours}: GET /api/web/sessions?q=lr 0.03", "/api/web/sessions?" + urlencode({"q": "lr 0.03", "limit": 50})),
                            (f"{ours}: GET /api/sessions?all=true&last=50", "/api/sessions?all=true&last=50")):
            r = timed(lambda: http.get(path), args.repeat)  # noqa: B023
            rows.append(("list", label, r, body_sizes(r["result"])))
        got = http.get("/api/web/sessions?limit=50").json()
        assert got["total"] == args.sessions and len(got["sessions"]) == 50, got["total"]

    ids = [store.get_session(n).id for n in names]

    def direct(buckets):
        return [store.downsampled_series(i, k, buckets=buckets) for i in ids for k in KEYS]

    pairs = [(i, k) for i in ids for k in KEYS]
    for buckets in args.buckets:
        r = timed(lambda: store.downsampled_many(pairs, buckets=buckets), args.repeat)  # noqa: B023
        rows.append(("graph", f"{ours}: store.downsampled_many({len(pairs)} series, buckets={buckets})", r, None,
                     f"spikes kept {sum(50.0 in s['y'] for s in r['result'])}/{len(r['result'])}"))
        r = timed(lambda: direct(buckets), args.repeat)
        points = sum(len(s["x"]) for s in r["result"])
        spikes = sum(50.0 in s["y"] for s in r["result"])
        rows.append(("graph", f"{ours}: {len(ids) * len(KEYS)} x store.downsampled_series(buckets={buckets})", r, None,
                     f"{points} points; spikes kept {spikes}/{len(r['result'])}"))
        query = urlencode([("s", n) for n in names] + [("buckets", buckets), ("x", "step")])
        r = timed(lambda: http.get("/api/web/graph?" + query), args.repeat)  # noqa: B023
        graph = r["result"].json()
        assert len(graph["series"]) == len(names), graph.get("missing")
        points = sum(len(v["x"]) for s in graph["series"].values() for v in s.values())
        rows.append(("graph", f"{ours}: GET /api/web/graph ({len(names)} sessions, buckets={buckets})", r, body_sizes(r["result"]),
                     f"{points} points"))
    store.close()
    return rows


def run_ours(args, database: str, ours: str) -> list[tuple]:
    """Our data loaded into `database` ("sqlite": a file in the server's home; "postgres": a
    temporary cluster; else a PostgreSQL URL), the server started on it, our rows measured."""
    from nsml.store.sql import open_store

    pg = pg_folder = None
    bench = Bench(prefix="nsml-bench-web-")
    try:
        if database == "sqlite":
            url = f"sqlite:///{bench.home / 'nsml.db'}"
        else:
            url = database
            if database == "postgres":
                from tests import postgres

                pg_folder = Path(tempfile.mkdtemp(prefix="nsml-pg-"))  # not under a 0700 folder: the postgres user reads it
                pg = postgres.start(pg_folder)
                url = pg.new_database()
            bench.env["NSML_DB_URL"] = url  # the server's database, its password kept out of `ps`
            store = open_store(url)
            with store.engine.connect() as conn:
                version = conn.exec_driver_sql("SHOW server_version").scalar()
            store.close()
            print(f"{ours}: PostgreSQL {version}" + (" (temporary cluster, fsync off, as tests/postgres.py starts it)" if pg else ""),
                  flush=True)
        t = time.perf_counter()
        names, ingest = populate_ours(url, args.sessions, args.graph_sessions, args.steps)
        print(f"{ours}: data in {time.perf_counter() - t:.1f} s; journals ingested (and rolled up) at "
              f"{ingest['values'] / ingest['ingest_s']:,.0f} values/s ({ingest['ingest_s']:.1f} s)", flush=True)
        bench.start()
        rows = bench_ours(args, bench, url, names, ours)
        if database == "sqlite":
            size = sum(f.stat().st_size for f in bench.home.glob("nsml.db*"))
            print(f"{ours}: database {size / 2**20:.0f} MiB; load {load():.2f}", flush=True)
        else:
            store = open_store(url)
            with store.engine.connect() as conn:
                size = conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar()
            store.close()
            print(f"{ours}: database {size / 2**20:.0f} MiB; load {load():.2f}", flush=True)
        return rows
    finally:
        bench.close()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg_folder, ignore_errors=True)


# -- MLflow side -------------------------------------------------------------------------------
MLFLOW_LOADER = r'''
import json, math, sqlite3, sys, time, uuid
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
cfg = json.loads(sys.argv[1])
exec(cfg["value_src"])
uri = "sqlite:///" + cfg["db"]
client = MlflowClient(tracking_uri=uri)
exp = client.create_experiment("bench", artifact_location=cfg["artifacts"])
template = client.create_run(exp, run_name="template")
client.log_batch(template.info.run_id, params=[Param("lr", "0.01"), Param("batch", "32"), Param("seed", "0")],
                 tags=[RunTag("owner", "alice"), RunTag("dataset", "bench")])
client.set_terminated(template.info.run_id)
db = sqlite3.connect(cfg["db"])
cols = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
row = dict(zip(cols, db.execute("SELECT * FROM runs WHERE run_uuid = ?", (template.info.run_id,)).fetchone()))
params_cols = [r[1] for r in db.execute("PRAGMA table_info(params)")]
total, graph, steps = cfg["sessions"], cfg["graph"], cfg["steps"]
t0 = int((time.time() - 86400 * 30) * 1000)
runs, params, tags, graph_ids = [], [], [], []
for i in range(total):
    rid = uuid.uuid4().hex
    g = i - (total - graph)
    r = dict(row, run_uuid=rid, name=f"alice/bench/{i + 1}", start_time=t0 + i * 60000, end_time=t0 + i * 60000 + 50000,
             status="FINISHED", artifact_uri=cfg["artifacts"] + "/" + rid)
    runs.append(tuple(r[c] for c in cols))
    k = g if g >= 0 else i
    for key, val in (("lr", f"0.0{k % 10}"), ("batch", str(32 * (k % 4 + 1))), ("seed", str(k))):
        params.append(tuple({"key": key, "value": val, "run_uuid": rid}[c] for c in params_cols))
    tags.append(("mlflow.runName", r["name"], rid))  # what the UI's name search reads
    if g >= 0:
        graph_ids.append(rid)
db.execute("DELETE FROM params WHERE run_uuid = ?", (template.info.run_id,))
db.execute("DELETE FROM tags WHERE run_uuid = ?", (template.info.run_id,))
db.execute("DELETE FROM runs WHERE run_uuid = ?", (template.info.run_id,))
db.executemany(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", runs)
db.executemany(f"INSERT INTO params ({', '.join(params_cols)}) VALUES ({', '.join('?' * len(params_cols))})", params)
db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
db.commit()
t = time.perf_counter()
keys = cfg["keys"]
if cfg["load"] == "client":
    for g, rid in enumerate(graph_ids):
        batch = []
        for step in range(steps):
            for key in keys:
                batch.append(Metric(key, value(key, g, step, steps), int((1.7e9 + step * 0.05) * 1000), step))
                if len(batch) == 1000:
                    client.log_batch(rid, metrics=batch); batch = []
        if batch:
            client.log_batch(rid, metrics=batch)
else:
    for g, rid in enumerate(graph_ids):
        rows = [(key, value(key, g, step, steps), int((1.7e9 + step * 0.05) * 1000), rid, step, 0)
                for step in range(steps) for key in keys]
        db.executemany('INSERT INTO metrics ("key", value, timestamp, run_uuid, step, is_nan) VALUES (?, ?, ?, ?, ?, ?)', rows)
        db.executemany('INSERT INTO latest_metrics ("key", value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)',
                       [(key, value(key, g, steps - 1, steps), int((1.7e9 + (steps - 1) * 0.05) * 1000), steps - 1, 0, rid) for key in keys])
        db.commit()
print(json.dumps({"experiment": exp, "graph_ids": graph_ids, "metrics_s": time.perf_counter() - t}))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlflow_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} and installing mlflow (pip) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "mlflow"], check=True)
    return python


def bench_mlflow(args, tmp: Path) -> tuple[list[tuple], dict]:
    import inspect

    python = mlflow_python(Path(args.mlflow_venv))
    version = subprocess.run([str(python), "-c", "import mlflow; print(mlflow.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    db, artifacts = tmp / "mlflow.db", tmp / "artifacts"
    if db.exists():  # --mlflow-reuse: loaded by an earlier run (loading 15 M points takes minutes)
        return serve_mlflow(args, python, db, artifacts, tmp, reused_info(db, args.graph_sessions, version))
    cfg = {"db": str(db), "artifacts": str(artifacts), "sessions": args.sessions, "graph": args.graph_sessions,
           "steps": args.mlflow_steps, "keys": list(KEYS), "load": args.mlflow_load,
           "value_src": "import math\n" + inspect.getsource(value)}
    t = time.perf_counter()
    loaded = subprocess.run([str(python), "-c", MLFLOW_LOADER, json.dumps(cfg)], capture_output=True, text=True)
    if loaded.returncode != 0:
        raise RuntimeError("loading MLflow failed:\n" + loaded.stderr[-3000:])
    info = json.loads(loaded.stdout.strip().splitlines()[-1])
    info.update(load_s=time.perf_counter() - t, version=version, steps=args.mlflow_steps)
    return serve_mlflow(args, python, db, artifacts, tmp, info)


def reused_info(db: Path, graph: int, version: str) -> dict:
    import sqlite3

    conn = sqlite3.connect(db)
    experiment = conn.execute("SELECT experiment_id FROM experiments WHERE name = 'bench'").fetchone()[0]
    ids = [r[0] for r in conn.execute(
        "SELECT run_uuid FROM runs WHERE experiment_id = ? ORDER BY start_time DESC LIMIT ?", (experiment, graph))][::-1]
    steps = conn.execute("SELECT MAX(step) FROM metrics WHERE run_uuid = ? AND key = ?", (ids[0], KEYS[0])).fetchone()[0] + 1
    conn.close()
    return {"experiment": str(experiment), "graph_ids": ids, "load_s": 0.0, "metrics_s": 0.0, "version": version,
            "steps": steps, "reused": True}


@contextlib.contextmanager
def mlflow_server(python: Path, db: Path, artifacts: Path, tmp: Path):
    """`mlflow server` on its SQLite store `db`, one worker, on a free loopback port; yields
    its URL once /health answers, and kills its process group afterwards."""
    port = free_port()
    log = open(tmp / "mlflow-server.log", "wb")
    server = subprocess.Popen(
        [str(python.parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{db}",
         "--default-artifact-root", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("mlflow server did not start:\n" + (tmp / "mlflow-server.log").read_text()[-3000:])
            time.sleep(0.25)
        yield url
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()


def serve_mlflow(args, python: Path, db: Path, artifacts: Path, tmp: Path, info: dict) -> tuple[list[tuple], dict]:
    rows = []
    with mlflow_server(python, db, artifacts, tmp) as url:
        http = httpx.Client(base_url=url, timeout=300)
        search = {"experiment_ids": [info["experiment"]], "max_results": 50, "run_view_type": "ACTIVE_ONLY",
                  "order_by": ["attributes.start_time DESC"]}
        r = timed(lambda: http.post("/ajax-api/2.0/mlflow/runs/search", json=search), args.repeat)
        assert len(r["result"].json()["runs"]) == 50
        rows.append(("list", "MLflow: POST runs/search max_results=50", r, body_sizes(r["result"])))
        like = dict(search, filter="attributes.run_name LIKE '%bench/99%'")
        r = timed(lambda: http.post("/ajax-api/2.0/mlflow/runs/search", json=like), args.repeat)
        rows.append(("list", "MLflow: POST runs/search, run_name LIKE", r, body_sizes(r["result"])))
        for buckets in args.buckets[:1] if "graph" in args.mlflow_views else []:  # minutes a round at 100,000 steps
            def history(buckets=buckets):
                responses = []
                for key in KEYS:
                    query = urlencode([("run_ids", rid) for rid in info["graph_ids"]]
                                      + [("metric_key", key), ("max_results", min(buckets, 2500))])
                    responses.append(http.get("/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval?" + query))
                return responses
            r = timed(history, args.mlflow_repeat)
            sizes = [body_sizes(x) for x in r["result"]]
            points = sum(len(x.json().get("metrics", [])) for x in r["result"])
            spikes = {(m["run_id"], m["key"]) for x in r["result"] for m in x.json().get("metrics", []) if m["value"] == 50.0}
            rows.append(("graph", f"MLflow: {len(KEYS)} x get-history-bulk-interval ({len(info['graph_ids'])} runs, max_results={buckets})", r,
                         (sum(s[0] for s in sizes), sum(s[1] for s in sizes)),
                         f"{points} points; spikes kept {len(spikes)}/{len(info['graph_ids']) * len(KEYS)}"))
        http.close()
    return rows, info


# -- report ------------------------------------------------------------------------------------
def print_table(rows: list[tuple]) -> None:
    print(f"\n{'view':6} {'what':66} {'first ms':>9} {'median ms':>10} {'max ms':>8} {'bytes':>11} {'gzip':>10}  note")
    for row in rows:
        view, label, r, sizes = row[:4]
        note = row[4] if len(row) > 4 else ""
        b, z = (f"{sizes[0]:,}", f"{sizes[1]:,}") if sizes else ("", "")
        print(f"{view:6} {label:66} {r['first']:9.1f} {r['median']:10.1f} {r['max']:8.1f} {b:>11} {z:>10}  {note}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--graph-sessions", type=int, default=50)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--buckets", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 500])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--mlflow-venv", default=str(Path(tempfile.gettempdir()) / "nsml-bench-mlflow-venv"))
    ap.add_argument("--mlflow-steps", type=int, default=None, help="steps per metric loaded into MLflow (default: --steps)")
    ap.add_argument("--mlflow-load", choices=("sql", "client"), default="sql")
    ap.add_argument("--mlflow-repeat", type=int, default=1, help="timed graph fetches after the first (each takes minutes)")
    ap.add_argument("--mlflow-views", type=lambda s: s.split(","), default=["list", "graph"], help="list,graph")
    ap.add_argument("--mlflow-reuse", default=None, help="a folder kept from an earlier run (its mlflow.db is used as loaded)")
    ap.add_argument("--runs-table", choices=("both", "sqlite", "postgresql", "none"), default="both",
                    help="GET /api/runs over --sessions sessions x 20 params x 20 metrics, on these databases (bench/_runs_table.py)")
    ap.add_argument("--db", default=None, help="also measure ours on this (empty) PostgreSQL database (postgresql+psycopg://…)")
    ap.add_argument("--postgres", action="store_true", help="also measure ours on a temporary PostgreSQL (tests/postgres.py)")
    ap.add_argument("--no-sqlite", action="store_true", help="ours on PostgreSQL only")
    ap.add_argument("--no-list", action="store_true", help="leave out our sessions-list timings (the graph's only)")
    args = ap.parse_args()
    if args.no_sqlite and not (args.db or args.postgres):
        ap.error("--no-sqlite needs --db or --postgres")
    args.mlflow_steps = args.mlflow_steps or args.steps
    print(f"web_scale: {args.sessions} sessions, {args.graph_sessions} graph sessions x {len(KEYS)} metrics x "
          f"{args.steps} steps; load {load():.2f}", flush=True)
    rows = []
    if not args.no_sqlite:
        rows += run_ours(args, "sqlite", "ours")
    if args.db or args.postgres:
        rows += run_ours(args, args.db or "postgres", "ours/PG")
    print_table(rows)  # now: MLflow's side takes long, and may fail
    if args.runs_table != "none":  # its own servers and data (bench/_runs_table.py)
        rows += bench_runs_table(args.sessions, args.runs_table, args.repeat,  # ... and MLflow's on the same runs
                                 None if args.no_mlflow else args.mlflow_venv)
        print_table([r for r in rows if r[0] == "runs"])
    if not args.no_mlflow:
        tmp = Path(args.mlflow_reuse) if args.mlflow_reuse else Path(tempfile.mkdtemp(prefix="nsml-bench-mlflow-"))
        try:
            ml_rows, info = bench_mlflow(args, tmp)
            size = sum(f.stat().st_size for f in tmp.glob("mlflow.db*"))
            how = "reused" if info.get("reused") else f"loaded ({args.mlflow_load}) in {info['load_s']:.1f} s, metrics {info['metrics_s']:.1f} s"
            print(f"MLflow {info['version']}: {info['steps']} steps per metric, {how}; database {size / 2**20:.0f} MiB; "
                  f"load {load():.2f}", flush=True)
            rows += ml_rows
        finally:
            if not args.mlflow_reuse:
                shutil.rmtree(tmp, ignore_errors=True)
        rows.sort(key=lambda r: r[0] != "list")
        print_table(rows)
    print(f"\nload average (1 min) at the end: {load():.2f}")


if __name__ == "__main__":
    main()
