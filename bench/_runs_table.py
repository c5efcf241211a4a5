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
"""

import argparse
import gzip
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

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


def populate(url: str, total: int, seed: int = 7) -> dict:
    """`total` sessions with parameters and metric summaries in the store at `url`; returns figures."""
    from nsml.core import params
    from nsml.store.sql import open_store
    from nsml.store.sql.models import SeriesRow, SessionParamRow

    rng = random.Random(seed)
    store = open_store(url)
    t = time.perf_counter()
    counters: dict[tuple[str, str], int] = {}
    rows = []
    t0 = time.time() - 86400 * 30
    for i in range(total):
        owner, dataset = OWNERS[i % 3], DATASETS[(i // 3) % 3]
        counters[owner, dataset] = counters.get((owner, dataset), 0) + 1
        rows.append(dict(
            owner=owner, dataset=dataset, number=counters[owner, dataset], entry="main.py", args=args_of(i, rng),
            status=("exited", "failed", "stopped")[i % 3], cpus=1.0, memory=1 << 30, gpus=0, gpu_ids="",
            created=t0 + i * 60, started=t0 + i * 60 + 1, ended=t0 + i * 60 + 50, memo="", exit_code=0, error="",
            image="", summary="{}", last_values="{}", journal_offset=0, log_offset=0, report_count=1000,
            kind="normal", source="", source_checkpoint="", visibility="public" if owner == "bob" else "team"))
    insert_sessions(store, rows, counters)
    with store.engine.begin() as conn:
        ids = [r[0] for r in conn.exec_driver_sql("SELECT id, args FROM sessions ORDER BY id")]
    param_rows, series_rows = [], []
    for session_id, row in zip(ids, rows):
        param_rows += [dict(session_id=session_id, key=k, num=num, text=text)
                       for k, (num, text) in params.storable(params.parse_args(row["args"])).items()]
        for m in range(METRICS):
            if m == 0 and session_id % 20 == 0:
                continue  # never reported the sort metric
            lo, hi = sorted((rng.random(), rng.random()))
            last = rng.uniform(lo, hi)
            series_rows.append(dict(
                session_id=session_id, key=f"m{m}", count=1000, numeric=1000, chunks=0, ordered=True, tail_step=999.0,
                first_wall=row["started"], last_value=last, last_step=999.0, last_wall=row["ended"],
                min_value=lo, min_step=float(rng.randrange(1000)), max_value=hi, max_step=float(rng.randrange(1000))))
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


def run_one(kind: str, total: int, repeat: int) -> list[tuple]:
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
        info = populate(url, total)
        print(f"runs table on {kind}: {total:,} sessions, {info['params']:,} parameters, {info['series']:,} series "
              f"in {info['load_s']:.1f} s", flush=True)
        bench.start()
        return measure(bench, url, total, repeat, "SQLite" if kind == "sqlite" else "PostgreSQL")
    finally:
        bench.close()
        if pg is not None:
            pg.stop()
            shutil.rmtree(pg_folder, ignore_errors=True)


def bench_runs_table(total: int = 10_000, databases: str = "both", repeat: int = 7) -> list[tuple]:
    kinds = ("sqlite", "postgresql") if databases == "both" else (databases,)
    rows = []
    for kind in kinds:
        rows += run_one(kind, total, repeat)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    from bench.web_scale import print_table

    print_table(bench_runs_table(args.sessions, args.db, args.repeat))


if __name__ == "__main__":
    main()
