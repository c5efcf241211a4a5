"""The runs table at scale (issue 13): 10,000 sessions, each with 20 parameters and 20 metric
series, shown 20 + 20 columns wide and sorted by a metric. Target: <= 300 ms server time.

Times GET /api/runs (first page and a deep one, both directions) through a real server, and
store.runs_table alone (as the admin, and as a user whose scope filters), on SQLite and on a
temporary PostgreSQL (tests/postgres.py: Debian's package, fsync off). Called by web_scale.py
(--runs-table), or on its own: `python -m bench._runs_table [--sessions N] [--db sqlite|postgresql|both]`.

The data goes straight into the tables, as insert_sessions does for sessions: session rows with
their `--pN value` arguments, their parameter rows (parsed by the code create_session uses),
and one series row per metric holding the summary the ingest would keep (count, last, min,
max). The table reads nothing else, so no point needs to exist; 1 in 20 sessions lacks the
sort metric, so nulls-last is part of every sort.

MLflow (skip with --no-mlflow; installed in --mlflow-venv, never imported here) gets the same
sessions as runs: the same names, owners (user_id), statuses, times, the 20 parameters as the
strings written in the arguments (MLflow stores params as strings), a `dataset` tag, and each
metric's last value as one `metrics` row and its `latest_metrics` row (what its search sorts
and filters on), inserted by SQL into the schema MLflow created (log_batch would take hours).
Both are then asked the same questions through their servers, ours on each database and MLflow
behind `mlflow server` on SQLite: the table sorted by m0 (our `metric:m0:last`, MLflow's
`metrics.m0`), first page and a deep one, both ways, and a few queries (our `q=`, its
`filter`). Each answer is checked against the other: the same runs, in the same order.
"""

import argparse
import base64
import gzip
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._harness import Bench, insert_sessions, timed  # noqa: E402

PARAMS = 20
METRICS = 20
OWNERS = ("alice", "bob", "carol")
DATASETS = ("bench", "mnist", "cifar")
OPTIMISERS = ("adam", "sgd", "adamw", "lion")


def args_of(i: int, rng: random.Random) -> str:
    """16 numeric parameters and 4 words, as a sweep would run them."""
    out = []
    for k in range(PARAMS):
        if k % 5 == 4:
            out.append(f"--p{k} {OPTIMISERS[(i + k) % 4]}")
        elif k % 5 == 0:
            out.append(f"--p{k} {rng.choice((16, 32, 64, 128, 256))}")
        else:
            out.append(f"--p{k} {rng.uniform(1e-5, 1e-1):.6g}")
    return " ".join(out)


def generate(total: int, seed: int = 7) -> list[dict]:
    """The sessions both systems get: each {"row": a SessionRow's columns, "series": {key:
    (last, min, min_step, max, max_step)}}; the (1-based) 20th, 40th, … lack m0."""
    rng = random.Random(seed)
    counters: dict[tuple[str, str], int] = {}
    out = []
    t0 = time.time() - 86400 * 30
    for i in range(total):
        owner, dataset = OWNERS[i % 3], DATASETS[(i // 3) % 3]
        counters[owner, dataset] = counters.get((owner, dataset), 0) + 1
        out.append({"row": dict(
            owner=owner, dataset=dataset, number=counters[owner, dataset], entry="main.py", args=args_of(i, rng),
            status=("exited", "failed", "stopped")[i % 3], cpus=1.0, memory=1 << 30, gpus=0, gpu_ids="",
            created=t0 + i * 60, started=t0 + i * 60 + 1, ended=t0 + i * 60 + 50, memo="", exit_code=0, error="",
            image="", summary="{}", last_values="{}", journal_offset=0, log_offset=0, report_count=1000,
            kind="normal", source="", source_checkpoint="", visibility="public" if owner == "bob" else "team")})
    for i, s in enumerate(out):  # after all the arguments, as the figures before MLflow's side were drawn
        s["series"] = {}
        for m in range(METRICS):
            if m == 0 and (i + 1) % 20 == 0:
                continue  # never reported the sort metric
            lo, hi = sorted((rng.random(), rng.random()))
            last = rng.uniform(lo, hi)
            s["series"][f"m{m}"] = (last, lo, float(rng.randrange(1000)), hi, float(rng.randrange(1000)))
    return out


def name_of(row: dict) -> str:
    return f"{row['owner']}/{row['dataset']}/{row['number']}"


def populate(url: str, sessions: list[dict]) -> dict:
    """`sessions` (generate) with parameters and metric summaries in the store at `url`; returns figures."""
    from nsml.core import params
    from nsml.store.sql import open_store
    from nsml.store.sql.models import SeriesRow, SessionParamRow

    store = open_store(url)
    t = time.perf_counter()
    rows = [s["row"] for s in sessions]
    counters = {}
    for row in rows:  # the last number each (owner, dataset) reached
        counters[row["owner"], row["dataset"]] = row["number"]
    insert_sessions(store, rows, counters)
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id FROM sessions ORDER BY id")]
    param_rows, series_rows = [], []
    for session_id, s in zip(ids, sessions):
        row = s["row"]
        param_rows += [dict(session_id=session_id, key=k, num=num, text=text)
                       for k, (num, text) in params.storable(params.parse_args(row["args"])).items()]
        series_rows += [dict(
            session_id=session_id, key=key, count=1000, numeric=1000, chunks=0, ordered=True, tail_step=999.0,
            first_wall=row["started"], last_value=last, last_step=999.0, last_wall=row["ended"],
            min_value=lo, min_step=lo_step, max_value=hi, max_step=hi_step)
            for key, (last, lo, lo_step, hi, hi_step) in s["series"].items()]
    with store.engine.begin() as conn:
        for table, data in ((SessionParamRow.__table__, param_rows), (SeriesRow.__table__, series_rows)):
            for i in range(0, len(data), 5000):
                conn.execute(table.insert(), data[i:i + 5000])
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:  # what autovacuum would do after a bulk load, now
            conn.exec_driver_sql("ANALYZE")
    store.close()
    return {"load_s": time.perf_counter() - t, "params": len(param_rows), "series": len(series_rows)}


def measure(bench: Bench, url: str, total: int, repeat: int, label: str) -> list[tuple]:
    """Rows (view, what, timings, body sizes, note) as web_scale.print_table prints them."""
    from nsml.core.params import Column
    from nsml.core.policy import Actor, session_scope
    from nsml.store.sql import open_store

    param_cols = [f"p{k}" for k in range(PARAMS)]
    metric_cols = [(f"m{m}", ("min", "last", "max")[m % 3]) for m in range(METRICS)]  # m0:min, the sort column
    deep = max(0, total - 50)
    out = []
    store = open_store(url)
    for order in ("desc", "asc"):
        for offset in (0, deep):
            for who, scope in (("admin", None), ("bob", session_scope(Actor("bob")))):
                if who == "bob" and offset:
                    continue
                r = timed(lambda: store.runs_table(param_cols, metric_cols, Column("metric", "m0", "min"), order,  # noqa: B023
                                                   50, offset, scope), repeat)  # noqa: B023
                rows = r["result"][1]
                assert len(rows) == 50 or offset, len(rows)
                out.append(("runs", f"{label}: store.runs_table(sort m0:min {order}, offset {offset}, {who})", r, None,
                            f"total {r['result'][0]}"))
    store.close()
    query = [("param", k) for k in param_cols] + [("metric", f"{k}:{a}") for k, a in metric_cols]
    for order in ("desc", "asc"):
        for offset in (0, deep):
            path = "/api/runs?" + urlencode(query + [("sort", "metric:m0:min"), ("order", order), ("limit", 50),
                                                     ("offset", offset)])
            r = timed(lambda: bench.http.get(path), repeat)  # noqa: B023
            resp = r["result"]
            resp.raise_for_status()
            body = resp.json()
            assert body["total"] == total and len(body["rows"]) == 50, (body["total"], len(body["rows"]))
            values = [row["metrics"]["m0"]["min"] for row in body["rows"]]
            if offset == 0:
                assert None not in values and values == sorted(values, reverse=order == "desc")
            else:
                assert values[-1] is None  # sessions without m0 come last, either way
            out.append(("runs", f"{label}: GET /api/runs (20+20 cols, sort m0:min {order}, offset {offset})", r,
                        (len(resp.content), len(gzip.compress(resp.content, 6))), ""))
    return out


# -- the same questions to MLflow ---------------------------------------------------------------
# (ours, MLflow's) for the same question. MLflow compares params as strings and only with =, !=,
# LIKE, ILIKE: `p0 = 64` agrees because both sides hold the text "64"; a range on a parameter
# has no MLflow equivalent, so it is asked anyway and MLflow's refusal is printed.
QUERIES = (
    ("m0 >= 0.5 and m1 < 0.2", "metrics.m0 >= 0.5 and metrics.m1 < 0.2"),
    ("p0 = 64 and m0 >= 0.5", "params.p0 = '64' and metrics.m0 >= 0.5"),
    ("p3 < 0.01 and m0 >= 0.5", "params.p3 < '0.01' and metrics.m0 >= 0.5"),
    ("p4 ~ adam", "params.p4 ILIKE '%adam%'"),  # ours: a case-insensitive substring
    ("user:bob and dataset:mnist", "attributes.user_id = 'bob' and tags.dataset = 'mnist'"),
    ('"bob/mnist/1"', "attributes.run_name ILIKE '%bob/mnist/1%'"),  # ours: a bare string is name or memo
)


def cases(total: int) -> list[tuple[str, dict, dict]]:
    """(label, our GET /api/runs arguments, MLflow's runs/search body): 50 rows a page. The deep
    page is 90 % in, where m0 still has values (the last 5 % lack it), so the two answers can
    be checked run for run; past that both put the runs without m0 last, but break ties
    differently (ours by id in the sort's direction, MLflow's by start time, newest first)."""
    deep = min(total * 9 // 10, total - total // 20 - 50) // 50 * 50  # and a whole page before the runs without m0
    out = []
    for order in ("desc", "asc"):
        for offset in (0, deep):
            where = "first page" if not offset else f"offset {offset:,}"
            out.append((f"sort m0 {order}, {where}", dict(sort="metric:m0:last", order=order, offset=offset),
                        dict(order_by=[f"metrics.m0 {order.upper()}"], offset=offset)))
    out += [(f"q: {ours}", dict(q=ours), dict(filter=theirs)) for ours, theirs in QUERIES]
    return out


def ask_ours(bench: Bench, total: int, repeat: int) -> dict:
    """{label: (timing, first page's names, total, every match's name or None)} through GET /api/runs,
    20 parameter and 20 metric (last) columns, as MLflow's answer carries every param and metric."""
    cols = [("param", f"p{k}") for k in range(PARAMS)] + [("metric", f"m{m}:last") for m in range(METRICS)]
    out = {}
    for label, ours, _ in cases(total):
        path = "/api/runs?" + urlencode(cols + [("limit", 50), *ours.items()])
        r = timed(lambda: bench.http.get(path), repeat)  # noqa: B023
        body = r["result"].raise_for_status().json()
        matching = None
        if "q" in ours:  # every match's name, 1,000 a page, no columns: to compare with MLflow's
            matching = set()
            while len(matching) < body["total"]:
                page = bench.get("/api/runs?" + urlencode({"q": ours["q"], "limit": 1000, "offset": len(matching)}))
                matching |= {row["name"] for row in page["rows"]}
        out[label] = (r, [row["name"] for row in body["rows"]], body["total"], matching)
    return out


MLFLOW_LOADER = r"""
import json, sqlite3, sys, uuid
from mlflow.tracking import MlflowClient
cfg = json.loads(sys.argv[1])
client = MlflowClient(tracking_uri="sqlite:///" + cfg["db"])  # MLflow creates (and migrates) its schema
exp = client.create_experiment("runs-table", artifact_location=cfg["artifacts"])
template = client.create_run(exp, run_name="template")  # a row as MLflow writes it, to copy
db = sqlite3.connect(cfg["db"])
cols = [r[1] for r in db.execute("PRAGMA table_info(runs)")]
row = dict(zip(cols, db.execute("SELECT * FROM runs WHERE run_uuid = ?", (template.info.run_id,)).fetchone()))
for table in ("tags", "params", "latest_metrics", "metrics", "runs"):
    db.execute(f"DELETE FROM {table} WHERE run_uuid = ?", (template.info.run_id,))
runs, params, tags, metrics = [], [], [], []
for r in json.load(open(cfg["runs"])):
    rid = uuid.uuid4().hex
    run = dict(row, run_uuid=rid, name=r["name"], user_id=r["owner"], status=r["status"], start_time=r["start"],
               end_time=r["end"], artifact_uri=cfg["artifacts"] + "/" + rid)
    runs.append(tuple(run[c] for c in cols))
    params += [(k, v, rid) for k, v in r["params"].items()]
    tags += [("mlflow.runName", r["name"], rid), ("mlflow.user", r["owner"], rid), ("dataset", r["dataset"], rid)]
    metrics += [(k, v, r["end"], 999, 0, rid) for k, v in r["metrics"].items()]
db.executemany(f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", runs)
db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)", params)
db.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)", tags)
for table in ("metrics", "latest_metrics"):
    db.executemany(f'INSERT INTO {table} ("key", value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, ?, ?)', metrics)
db.commit()
print(json.dumps({"experiment": exp, "runs": len(runs), "params": len(params), "metrics": len(metrics)}))
"""


def mlflow_runs(sessions: list[dict]) -> list[dict]:
    """`sessions` as MLflow runs: params as the text written in the arguments, metrics' last values."""
    from nsml.core import params

    status = {"exited": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}
    return [{"name": name_of(s["row"]), "owner": s["row"]["owner"], "dataset": s["row"]["dataset"],
             "status": status[s["row"]["status"]], "start": int(s["row"]["started"] * 1000),
             "end": int(s["row"]["ended"] * 1000),
             "params": {k: text for k, (_, text) in params.storable(params.parse_args(s["row"]["args"])).items()},
             "metrics": {k: v[0] for k, v in s["series"].items()}} for s in sessions]


def ask_mlflow(venv: Path, sessions: list[dict], repeat: int) -> tuple[str, dict]:
    """MLflow's version and {label: (timing or its refusal, first page's run names, every match's name or None)}."""
    from bench.web_scale import mlflow_python, mlflow_server  # here: web_scale imports this module

    python = mlflow_python(venv)
    version = subprocess.run([str(python), "-c", "import mlflow; print(mlflow.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    tmp = Path(tempfile.mkdtemp(prefix="nsml-bench-mlflow-runs-"))
    try:
        db, artifacts = tmp / "mlflow.db", tmp / "artifacts"
        (tmp / "runs.json").write_text(json.dumps(mlflow_runs(sessions)))
        cfg = {"db": str(db), "artifacts": str(artifacts), "runs": str(tmp / "runs.json")}
        t = time.perf_counter()
        loaded = subprocess.run([str(python), "-c", MLFLOW_LOADER, json.dumps(cfg)], capture_output=True, text=True)
        if loaded.returncode != 0:
            raise RuntimeError("loading MLflow failed:\n" + loaded.stderr[-3000:])
        info = json.loads(loaded.stdout.strip().splitlines()[-1])
        print(f"MLflow {version}: {info['runs']:,} runs, {info['params']:,} params, {info['metrics']:,} metrics "
              f"(and as many latest_metrics) in {time.perf_counter() - t:.1f} s; database "
              f"{db.stat().st_size / 2**20:.0f} MiB", flush=True)
        with mlflow_server(python, db, artifacts, tmp) as url, httpx.Client(base_url=url, timeout=600) as http:
            def search(body: dict) -> httpx.Response:
                return http.post("/ajax-api/2.0/mlflow/runs/search", json={
                    "experiment_ids": [info["experiment"]], "run_view_type": "ACTIVE_ONLY", "max_results": 50, **body})

            # The page token is opaque; today it is base64 JSON {"offset": N} (SearchUtils.create_page_token).
            # Check that on a real one, then write the deep page's token, where following next_page_token leads.
            token = search({}).raise_for_status().json()["next_page_token"]
            assert json.loads(base64.b64decode(token)) == {"offset": 50}, token

            def all_names(body: dict) -> set[str]:
                """Every run a filter selects, 50,000 (its most) a page: MLflow answers no total."""
                names, token = set(), None
                while True:
                    got = search(dict(body, max_results=50_000, **({"page_token": token} if token else {})))
                    got = got.raise_for_status().json()
                    names |= {run["info"]["run_name"] for run in got.get("runs", [])}
                    token = got.get("next_page_token")
                    if not token:
                        return names

            out = {}
            for label, _, theirs in cases(len(sessions)):
                body = {k: v for k, v in theirs.items() if k != "offset"}
                if theirs.get("offset"):
                    body["page_token"] = base64.b64encode(json.dumps({"offset": theirs["offset"]}).encode()).decode()
                r = timed(lambda: search(body), repeat)  # noqa: B023
                if r["result"].status_code != 200:  # a comparison MLflow does not allow: say what it said
                    out[label] = (r["result"].json().get("message", r["result"].text)[:200], [], None)
                    continue
                names = [run["info"]["run_name"] for run in r["result"].json().get("runs", [])]
                out[label] = (r, names, all_names(body) if "filter" in theirs else None)
        return version, out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_comparison(total: int, ours: dict[str, dict], mlflow: tuple[str, dict] | None, repeat: int) -> None:
    """Median / p95 of each side, and whether the answers agree (the same runs; for a page, in
    the same order). Ours on each database must agree with each other exactly."""
    systems = list(ours) + ([f"MLflow {mlflow[0]}"] if mlflow else [])
    print(f"\nruns table and queries, {total:,} runs x {PARAMS} params x {METRICS} metrics, 50 a page: median / p95 ms "
          f"of {repeat} after one warm-up (client wall time, loopback)")
    print(f"{'what':36}" + "".join(f"{name:>20}" for name in systems) + "  answers")
    reference = next(iter(ours.values()))
    for label, _, _ in cases(total):
        _, names, count, matching = reference[label]
        cells = [f"{o[label][0]['median']:.1f} / {o[label][0]['p95']:.1f}" for o in ours.values()]
        agree = all(o[label][1] == names and o[label][2] == count for o in ours.values())
        note = f"ours {count:,} runs" + ("" if agree else " (OURS DIFFER BETWEEN DATABASES)")
        if mlflow:
            theirs, their_names, their_matching = mlflow[1][label]
            if isinstance(theirs, str):
                cells.append("refused")
                note += f"; MLflow refused: {theirs}"
            else:
                cells.append(f"{theirs['median']:.1f} / {theirs['p95']:.1f}")
                if matching is not None:
                    note += f", MLflow {len(their_matching):,}: " + (
                        "the same runs" if matching == their_matching else f"{len(matching ^ their_matching):,} differ")
                page = ("the same runs in the same order" if names == their_names else
                        "the same runs, in another order" if set(names) == set(their_names) else
                        f"{len(set(names) ^ set(their_names))} runs differ")
                note += f"; page of {len(names)}: {page}"
        print(f"{label:36}" + "".join(f"{c:>20}" for c in cells) + "  " + note)


def run_one(kind: str, sessions: list[dict], repeat: int) -> tuple[list[tuple], dict]:
    """The bench's rows and ask_ours' answers, on a fresh `kind` database."""
    total = len(sessions)
    pg = pg_folder = None
    bench = Bench(prefix="nsml-bench-runs-")
    try:
        if kind == "postgresql":
            from tests import postgres

            pg_folder = Path(tempfile.mkdtemp(prefix="nsml-pg-"))  # not under a 0700 folder: the postgres user reads it
            pg = postgres.start(pg_folder)
            url = pg.new_database()
            bench.env["NSML_DB_URL"] = url  # the server's database, its password kept out of `ps`
        else:
            url = f"sqlite:///{bench.home / 'nsml.db'}"
        info = populate(url, sessions)
        print(f"runs table on {kind}: {total:,} sessions, {info['params']:,} parameters, {info['series']:,} series "
              f"in {info['load_s']:.1f} s", flush=True)
        bench.start()
        label = "SQLite" if kind == "sqlite" else "PostgreSQL"
        return measure(bench, url, total, repeat, label), ask_ours(bench, total, repeat)
    finally:
        bench.close()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg_folder, ignore_errors=True)


def bench_runs_table(total: int = 10_000, databases: str = "both", repeat: int = 7,
                     mlflow_venv: str | None = None) -> list[tuple]:
    """The rows of our runs-table figures; prints ours beside MLflow's (None: ours only)."""
    from bench.web_scale import load

    print(f"runs table: {total:,} sessions; load {load():.2f}", flush=True)
    sessions = generate(total)
    kinds = ("sqlite", "postgresql") if databases == "both" else (databases,)
    rows, ours = [], {}
    for kind in kinds:
        got, ours[f"ours {'SQLite' if kind == 'sqlite' else 'PG'}"] = run_one(kind, sessions, repeat)
        rows += got
    mlflow = ask_mlflow(Path(mlflow_venv), sessions, repeat) if mlflow_venv else None
    print_comparison(total, ours, mlflow, repeat)
    print(f"runs table: load {load():.2f} at the end", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--no-mlflow", action="store_true")
    ap.add_argument("--mlflow-venv", default=str(Path(tempfile.gettempdir()) / "nsml-bench-mlflow-venv"),
                    help="MLflow's virtualenv (made with pip if missing; the one web_scale.py uses)")
    args = ap.parse_args()
    from bench.web_scale import print_table

    print_table(bench_runs_table(args.sessions, args.db, args.repeat, None if args.no_mlflow else args.mlflow_venv))


if __name__ == "__main__":
    main()
