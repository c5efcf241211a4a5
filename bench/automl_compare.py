"""AutoML beside Optuna and Ray Tune (issue 16's benchmark): the same real training tasks
(bench/_automl_tasks.py: an MLP and a small CNN on scikit-learn's digits, gradient boosting on a
seeded make_classification set), searched at equal compute (the same total trial-epochs, the
same concurrency) by

- ours: `nsml automl run` on a real server (a temporary NSML_HOME, a free loopback port, an
  inventory of CONCURRENCY CPUs, one a trial), every trial an ordinary sandboxed session
  (bench/automl_tasks/TASK.py) reporting val/acc and saving each epoch: ours-random,
  ours-tpe, ours-tpe-asha, ours-pbt (where `scheduler: pbt` runs on this checkout);
- optuna-tpe-hyperband: Optuna in-process, TPESampler + HyperbandPruner (bench/_automl_peers.py);
- ray-asha-random, ray-asha-optuna, ray-pbt: Ray Tune in a virtualenv of its own (--peers-venv,
  created here on first use: `pip install "ray[tune]" optuna scikit-learn torch==2.13.0`).

Every strategy may run BUDGET trial-epochs: the server's study is stopped (nsml automl stop -f)
once its trials reported that many, Optuna's workers take a shared count before each epoch, Ray's
stopper ends the run at that many results; an epoch past the budget is cut before scoring, so a
pruned trial's unused epochs went to more trials. Reported per task and strategy, over SEEDS
seeds: the best validation accuracy within the budget (median and IQR) and the time from the
search's start to the task's target accuracy (median over seeds; "not reached" when most never
did). Then the platform's own cost per trial, from the server's session timestamps and each
child's first report, and slot utilisation with and without stop-and-go.

    python bench/automl_compare.py                               # 3 tasks x 5 seeds, every strategy
    python bench/automl_compare.py --smoke                       # one task, one seed, 3 trials, no Ray
    python bench/automl_compare.py --tasks mlp --seeds 3 --strategies ours-tpe,optuna-tpe-hyperband --json out.json

Figures are printed, never asserted (tests/test_bench_automl.py checks the table is well formed).
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

import _automl_tasks as tasks  # noqa: E402
from _harness import Bench  # noqa: E402

OURS = {"ours-random": ("random", "none"), "ours-tpe": ("tpe", "none"), "ours-tpe-asha": ("tpe", "asha"),
        "ours-pbt": ("random", "pbt")}
PEERS = ("optuna-tpe-hyperband", "ray-asha-random", "ray-asha-optuna", "ray-pbt")
STRATEGIES = (*OURS, *PEERS)
MEASURE = "val/acc"
UTIL_EPOCHS, UTIL_HOLD, UTIL_ARRIVE = 15, 6.0, 4.0  # the utilisation study's trials, competitor's hold, its arrival
UTIL_MODES = ("static", "stop", "stop-and-go", "pause-aside")
PBT_INTERVAL = 2  # epochs between PBT's exploit steps, ours (step) and Ray's (perturbation_interval)
POLL = 0.25


def log(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- the peers' virtualenv --------------------------------------------------------------------
def default_peers_venv() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nsml-bench" / "automl-peers-venv"


def peers_python(venv: Path, create: bool = True) -> tuple[str | None, str]:
    """The peers' interpreter with Ray Tune importable (created and installed when missing);
    (None, why) where that cannot be."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import ray, ray.tune, optuna, sklearn, torch"]
    if python.exists() and subprocess.run(check, capture_output=True, timeout=300).returncode == 0:
        return str(python), ""
    if not create:
        return None, f"no Ray Tune in {venv}"
    log(f"creating the peers' virtualenv {venv} (ray[tune], optuna, scikit-learn, torch==2.13.0): a few minutes, once")
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "ray[tune]", "optuna", "scikit-learn", "torch==2.13.0"],
                             capture_output=True, text=True, timeout=1800)
        if pip.returncode != 0:
            return None, "pip could not install ray[tune] there: " + (pip.stderr.strip().splitlines() or ["?"])[-1]
    except (OSError, subprocess.SubprocessError) as err:
        return None, f"could not create {venv}: {err}"
    if subprocess.run(check, capture_output=True, timeout=300).returncode != 0:
        return None, f"Ray Tune does not import in {venv}"
    return str(python), ""


def run_peer(python: str, strategy: str, task: str, seeds: list[int], budget: int, concurrency: int, timeout: float) -> list[dict]:
    cmd = [python, str(HERE / "_automl_peers.py"), strategy, task, ",".join(map(str, seeds)), str(budget), str(concurrency)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BENCH_PEER_TIMEOUT": str(timeout), "RAY_DEDUP_LOGS": "0"}
    env = {k: v for k, v in env.items() if not k.startswith("NSML_")}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout * len(seeds) + 120, env=env, cwd=str(HERE))
    except subprocess.TimeoutExpired:
        log(f"{strategy} on {task} ran past its timeout")
        return []
    out = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or len(out) < len(seeds):
        log(f"{strategy} on {task} failed ({proc.returncode}):\n" + proc.stderr[-3000:])
    return out


# -- ours, through a real server ---------------------------------------------------------------
class Ours:
    def __init__(self, concurrency: int):
        self.concurrency = concurrency
        self.bench = Bench(prefix="nsml-bench-automl-", server_args=["--cpus", str(concurrency), "--memory", "16G"]).start()
        self.code: dict[str, Path] = {}
        self.pbt_ok: bool | None = None

    def close(self) -> None:
        self.bench.close()

    def code_folder(self, task: str) -> Path:
        if task not in self.code:
            folder = self.bench.work / f"code-{task}"
            folder.mkdir(parents=True)
            for f in (HERE / "automl_tasks").glob("*.py"):
                shutil.copy(f, folder / f.name)
            shutil.copy(HERE / "_automl_tasks.py", folder / "_automl_tasks.py")
            self.code[task] = folder
        return self.code[task]

    def config(self, task: str, seed: int, budget: int, algorithm: str, scheduler: str, **over) -> dict:
        cls = tasks.TASKS[task]
        cfg = {"h_params": cls.space, "entry": f"{task}.py", "args": f"--epochs {cls.max_epochs} --seed {seed}",
               "population": self.concurrency, "step": {"epoch": 1}, "order": "descending", "measure": MEASURE.replace("/", "__"),
               "algorithm": algorithm, "scheduler": scheduler, "resources": {"gpus": 0, "cpus": 1, "memory": "1G"},
               "termination": {"max_session_number": max(1, budget)}}
        cfg.update(over)
        return cfg

    def start(self, task: str, seed: int, cfg: dict) -> tuple[str, float]:
        path = self.bench.work / f"study-{task}-{seed}-{time.monotonic_ns()}.json"
        path.write_text(json.dumps(cfg))
        t0 = time.time()
        out = self.bench.cli("automl", "run", "-c", path, "--path", self.code_folder(task), "--seed", seed, "-j")
        return json.loads(out.stdout)["name"], t0

    def study(self, name: str) -> dict:
        return self.bench.get("/api/automl/" + name)

    def run(self, strategy: str, task: str, seed: int, budget: int, timeout: float) -> dict:
        algorithm, scheduler = OURS[strategy]
        over = {"step": {"epoch": PBT_INTERVAL}} if scheduler == "pbt" else {}
        name, t0 = self.start(task, seed, self.config(task, seed, budget, algorithm, scheduler, **over))
        stopped, deadline = False, time.time() + timeout
        counts: dict[str, int] = {}
        while True:
            d = self.study(name)
            epochs = self.epochs_run(d, counts)
            if not stopped and (epochs >= budget or time.time() > deadline):
                self.bench.http.post(f"/api/automl/{name}/stop", params={"force": "true"})
                stopped = True
            if d["status"] not in ("running", "queued"):
                break
            if time.time() > deadline + 60:
                log(f"{name} did not end within {timeout + 60:.0f} s")
                break
            time.sleep(POLL)
        return self.collect(name, t0, d)

    def epochs_run(self, d: dict, counts: dict) -> int:
        """Epochs the study's trials reported so far: the points of val/acc of each child (a
        fork's series starts where its source was, so points are counted, not epoch numbers)."""
        total = 0
        for t in d["trials"]:
            s = t["session"]
            if not s:
                continue
            if s not in counts or t["session_status"] in ("running", "queued", ""):
                keys = self.bench.get(Bench.api_path(s) + "/metrics")
                counts[s] = int(keys.get(MEASURE, 0))
            total += counts[s]
        return total

    def series(self, session: str, key: str) -> dict:
        return self.bench.get(Bench.api_path(session) + "/metrics/" + key)

    def collect(self, name: str, t0: float, d: dict) -> dict:
        events, trials = [], []
        d = self.study(name)
        for t in d["trials"]:
            if not t["session"]:
                continue
            s = self.bench.session(t["session"])
            acc = self.series(t["session"], MEASURE)
            started = self.series(t["session"], "started")
            events += [(w, v, t["number"]) for w, v in zip(acc["walltimes"], acc["values"]) if isinstance(v, (int, float))]
            trials.append({"number": t["number"], "state": t["state"], "asked": t["created"], "created": s["created"],
                           "started": s["started"], "ended": s["ended"], "attempt": s.get("attempt", 1),
                           "process_start": started["values"][0] if started["values"] else None,
                           "first_report": acc["walltimes"][0] if acc["walltimes"] else None,
                           "epochs": len(acc["values"]), "kind": s["kind"]})
        return {"events": events, "t0": t0, "setup_s": 0.0, "trials": len(trials), "trial_times": trials,
                "status": d["status"], "error": d.get("error", "")}

    def pbt_works(self) -> tuple[bool, str]:
        """Whether `scheduler: pbt` is implemented on this checkout (the lead was building it)."""
        try:
            from nsml.core.automl_config import parse_config
            from nsml.server.automl import driver

            parse_config(self.config("mlp", 0, 2, "random", "pbt"))
            if not hasattr(driver.Driver, "_exploit"):
                return False, "the study driver has no PBT exploit step yet"
            return True, ""
        except Exception as err:  # the config refused
            return False, str(err).strip().splitlines()[-1][:300]


# -- scoring ----------------------------------------------------------------------------------
def score(run: dict, budget: int, target: float) -> dict:
    """The best val/acc within the first BUDGET epochs (by walltime) and when the target was first reached."""
    events = sorted(run["events"])[:budget]
    best, reached = None, None
    for w, v, _ in events:
        best = v if best is None else max(best, v)
        if reached is None and v >= target:
            reached = w - run["t0"]
    return {"best": best, "time_to_target": reached, "epochs": len(events), "trials": len({e[2] for e in events}),
            "wall": (events[-1][0] - run["t0"]) if events else None, "setup_s": run.get("setup_s", 0.0)}


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[18] if len(xs) > 1 else xs[0]


def summarise(scores: list[dict]) -> dict:
    bests = [s["best"] for s in scores if s["best"] is not None]
    times = [s["time_to_target"] if s["time_to_target"] is not None else float("inf") for s in scores]
    out = {"seeds": len(scores), "reached": sum(s["time_to_target"] is not None for s in scores)}
    if bests:
        q1, med, q3 = quartiles(bests)
        out.update(best_median=med, best_q1=q1, best_q3=q3)
    if times:
        med = statistics.median(sorted(times))
        out["ttt_median"] = None if med == float("inf") else med
    walls = [s["wall"] for s in scores if s["wall"] is not None]
    out["wall_median"] = statistics.median(walls) if walls else None
    out["trials_median"] = statistics.median([s["trials"] for s in scores]) if scores else 0
    out["epochs_median"] = statistics.median([s["epochs"] for s in scores]) if scores else 0
    return out


def table(task: str, rows: dict[str, dict], budget: int, target: float) -> str:
    lines = [f"### {task}: best val/acc within {budget} trial-epochs; time to val/acc >= {target:g}",
             "", "| strategy | seeds | best (median) | IQR | time to target (median) | reached | trials | epochs | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for strategy, s in rows.items():
        if "note" in s:
            lines.append(f"| {strategy} | 0 | n/a | n/a | n/a | n/a | n/a | n/a | {s['note']} |")
            continue
        best = f"{s['best_median']:.4f}" if "best_median" in s else "n/a"
        iqr = f"{s['best_q1']:.4f}-{s['best_q3']:.4f}" if "best_q1" in s else "n/a"
        ttt = f"{s['ttt_median']:.1f} s" if s.get("ttt_median") is not None else "not reached"
        wall = f"{s['wall_median']:.1f}" if s.get("wall_median") is not None else "n/a"
        lines.append(f"| {strategy} | {s['seeds']} | {best} | {iqr} | {ttt} | {s['reached']}/{s['seeds']} | "
                     f"{s['trials_median']:g} | {s['epochs_median']:g} | {wall} |")
    return "\n".join(lines)


# -- the platform's own overhead --------------------------------------------------------------
def overhead(runs: list[dict]) -> dict:
    """From our runs' trials: ask -> child created (the driver), created -> started (queue and
    placement), started -> the process's first line (sandbox and interpreter), the process's
    first line -> first report (the task's imports, data and first epoch: not the platform's),
    and the hand-over gap: a trial's ask after the trial whose end freed its slot."""
    parts = {"ask_to_created": [], "created_to_started": [], "started_to_process": [], "process_to_first_report": [],
             "handover_gap": []}
    for run in runs:
        ts = [t for t in run.get("trial_times", []) if t["kind"] == "normal"]
        ends = sorted(t["ended"] for t in ts if t["ended"])
        for t in ts:
            if t["created"] and t["asked"]:
                parts["ask_to_created"].append(t["created"] - t["asked"])
            if t["attempt"] == 1 and t["started"] and t["created"]:
                parts["created_to_started"].append(t["started"] - t["created"])
            if t["attempt"] == 1 and t["process_start"] and t["started"]:
                parts["started_to_process"].append(t["process_start"] - t["started"])
            if t["process_start"] and t["first_report"]:
                parts["process_to_first_report"].append(t["first_report"] - t["process_start"])
            before = [e for e in ends if e <= t["asked"]]
            if before and t["number"] >= 1:
                gap = t["asked"] - before[-1]
                if gap < 30:
                    parts["handover_gap"].append(gap)
    out = {}
    for k, xs in parts.items():
        if xs:
            q1, med, q3 = quartiles(xs)
            out[k] = {"median": med, "q1": q1, "q3": q3, "p95": p95(xs), "n": len(xs)}
    plat = [k for k in ("handover_gap", "ask_to_created", "created_to_started", "started_to_process") if k in out]
    out["platform_per_trial_median"] = sum(out[k]["median"] for k in plat)
    return out


SHIP = '''
import time, nsml
for i in range(40):
    nsml.report(step=i, epoch=i, t=time.time())
    time.sleep(0.05)
'''


def shipping_lag(ours: Ours) -> dict:
    """A session reporting 40 points 50 ms apart, its last_values polled every 10 ms: the time
    from a point's walltime to the server showing it (an upper bound, by the poll)."""
    b = ours.bench
    folder = b.work / "ship"
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(SHIP)
    name = Bench.session_name(b.cli("run", "-e", "main.py", "--cpus", "1", "--memory", "256M", cwd=folder).stdout)
    seen: dict[int, float] = {}
    end = time.time() + 60
    while time.time() < end:
        s = b.session(name)
        e = s["last_values"].get("epoch")
        if isinstance(e, (int, float)) and int(e) not in seen:
            seen[int(e)] = time.time()
        if s["status"] in ("exited", "failed", "stopped"):
            break
        time.sleep(0.01)
    series = ours.series(name, "t")
    lags = [seen[int(st)] - w for st, w in zip(series["steps"], series["walltimes"]) if st is not None and int(st) in seen]
    if not lags:
        return {}
    q1, med, q3 = quartiles(lags)
    return {"median": med, "q1": q1, "q3": q3, "p95": p95(lags), "n": len(lags)}


# -- slot utilisation with and without stop-and-go ---------------------------------------------
COMPETITOR = '''
import time, nsml
t = time.time()
i = 0
while time.time() - t < {hold}:
    sum(x * x for x in range(20000))
    if i % 20 == 0:
        nsml.report(step=i, busy=1)
    i += 1
'''


def utilisation(ours: Ours, mode: str, trials: int, epochs: int, hold: float, arrive: float, timeout: float) -> dict:
    """A study of `trials` CNN trials (`epochs` each, population 2) on the 2-slot server; `arrive`
    s after its first trial runs, a competing 1-slot session (another user's work, high priority)
    is submitted and holds its slot `hold` s. Modes: `static` (no stop-and-go: the study keeps
    population 1 so a slot stays free for others), `stop` (population 2; the competitor's slot is
    made by stopping a trial: its work since the last save and its remaining epochs are lost),
    `stop-and-go` (population 2; the trial is preempted as the scheduler does it, `pause
    --requeue`: checkpointed, ended and queued again, so it resumes from its checkpoint as soon
    as a slot frees), `pause-aside` (population 2; a plain `nsml pause`, which the study's driver
    sets aside until no new trial may start, nsml.server.automl.driver). Busy slot-seconds are integrated from the sessions' states polled every 0.1 s;
    useful epochs are the ones the study's trials reported (a stopped trial's lost ones excluded)."""
    b = ours.bench
    space = {"lr": {"parameters": [0.002, 0.004], "distribution": "log_uniform", "type": "float"},
             "channels": {"parameters": [20, 24], "distribution": "uniform", "type": "int"},
             "dropout": {"parameters": [0.1, 0.2], "distribution": "uniform", "type": "float"},
             "wd": {"parameters": [1e-5, 1e-4], "distribution": "log_uniform", "type": "float"},
             "batch": {"parameters": [32], "distribution": "categorical", "type": "int"}}
    cfg = ours.config("cnn", 0, trials, "random", "none", h_params=space, args=f"--epochs {epochs} --seed 0",
                      population=1 if mode == "static" else 2, termination={"max_session_number": trials})
    folder = b.work / "competitor"
    folder.mkdir(exist_ok=True)
    (folder / "main.py").write_text(COMPETITOR.format(hold=hold))
    name, t0 = ours.start("cnn", 0, cfg)
    busy, last, competitor, acted, history, tries = 0.0, time.time(), None, None, [], None
    timeline = {"victim": [], "competitor": []}  # (status, seconds after the pause/stop was asked) as polled
    first_run = None
    end = time.time() + timeout
    while time.time() < end:
        d = ours.study(name)
        sessions = [t["session"] for t in d["trials"] if t["session"]] + ([competitor] if competitor else [])
        states = {s: b.session(s) for s in sessions}
        now = time.time()
        running = sum(1 for s in states.values() if s["status"] == "running")
        busy += running * (now - last)
        history.append((now - t0, running))
        last = now
        if first_run is None and running:
            first_run = now
        if competitor is None and first_run is not None and now - first_run >= arrive:
            competitor = Bench.session_name(b.cli("run", "-e", "main.py", "--cpus", "1", "--memory", "256M", "--priority", "high",
                                                  cwd=folder).stdout)
        if competitor and acted is None and mode != "static" and states.get(competitor, {}).get("status", "queued") == "queued":
            # the scheduler's part, played here (trials are not preemptible sessions): the running
            # trial that saved most recently makes room; a refused pause is asked again next poll
            victims = sorted((t for t in d["trials"] if t["session"] and states[t["session"]]["status"] == "running"
                              and "epoch" in states[t["session"]]["last_values"]), key=lambda t: -t["number"])
            if victims:
                path = Bench.api_path(victims[0]["session"])
                if mode == "stop":
                    resp = b.http.post(path + "/stop")
                else:  # stop-and-go: what a preemption does (checkpoint, end, queue again); pause-aside: a plain pause
                    resp = b.http.post(path + "/pause", params={"requeue": "true"} if mode == "stop-and-go" else None)
                tries = (tries or 0) + 1
                if resp.status_code < 300 or tries >= 50:
                    acted = {"session": victims[0]["session"], "at": now, "status": resp.status_code, "answer": resp.text[:200],
                             "tries": tries}
        for who, key in ((acted["session"] if acted else None, "victim"), (competitor, "competitor")):
            st = states.get(who, {}).get("status") if who else None
            if st and (not timeline[key] or timeline[key][-1][0] != st):
                timeline[key].append((st, round(now - (acted["at"] if acted else t0), 2)))
        done = d["status"] not in ("running", "queued")
        comp_done = competitor is not None and states.get(competitor, {}).get("status") in ("exited", "failed", "stopped")
        if done and (competitor is None or comp_done):
            break
        time.sleep(0.1)
    wall = time.time() - t0
    d = ours.study(name)
    useful = 0
    resume = {}
    for t in d["trials"]:
        if not t["session"]:
            continue
        acc = ours.series(t["session"], MEASURE)
        useful += len({st for st in acc["steps"] if st is not None})
        if acted and t["session"] == acted["session"]:
            s = b.session(t["session"])
            after = [w for w in acc["walltimes"] if w > acted["at"]]
            if mode in ("stop-and-go", "pause-aside") and s.get("attempt", 1) > 1 and s["started"] and after:
                resume = {"attempt": s["attempt"], "started_to_first_report": after[0] - s["started"] if after[0] > s["started"] else None}
    comp = b.session(competitor) if competitor else {}
    return {"mode": mode, "wall": wall, "busy_slot_s": busy, "utilisation": busy / (2 * wall), "useful_epochs": useful,
            "planned_epochs": trials * epochs, "competitor_wait": (comp["started"] - comp["created"]) if comp.get("started") else None,
            "acted": acted, "resume": resume, "study_status": d["status"], "trials": len(d["trials"]), "timeline": timeline}


# -- main -------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="mlp,cnn,gbdt")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=None, help="trial-epochs per search (default: 3 x the most epochs a trial runs)")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--smoke", action="store_true", help="one task, one seed, 3 trials' worth of epochs, ours-random and Optuna")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--peers-venv", type=Path, default=None, help=f"Ray Tune's virtualenv (default {default_peers_venv()})")
    ap.add_argument("--no-overhead", action="store_true", help="skip the shipping-lag and utilisation runs")
    ap.add_argument("--no-search", action="store_true", help="only the shipping-lag and utilisation runs")
    ap.add_argument("--util-modes", default=",".join(UTIL_MODES), help=f"utilisation modes to run ({', '.join(UTIL_MODES)})")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one search may take")
    ap.add_argument("--chunk", type=int, default=3, help="seeds run per pass over every task and strategy")
    ap.add_argument("--max-minutes", type=float, default=0, help="start no further chunk of seeds after this (0: no limit)")
    a = ap.parse_args(argv)
    names = [t.strip() for t in a.tasks.split(",") if t.strip()]
    strategies = [s.strip() for s in a.strategies.split(",") if s.strip()]
    if a.smoke:
        names, strategies, a.seeds = names[:1], ["ours-random", "optuna-tpe-hyperband"], 1
    bad = [t for t in names if t not in tasks.TASKS] + [s for s in strategies if s not in STRATEGIES]
    if bad:
        ap.error(f"unknown task or strategy: {', '.join(bad)} (tasks: {', '.join(tasks.TASKS)}; strategies: {', '.join(STRATEGIES)})")
    seeds = list(range(1, a.seeds + 1))
    ray_python, ray_why = None, ""
    if any(s.startswith("ray-") for s in strategies):
        ray_python, ray_why = peers_python(a.peers_venv or default_peers_venv())
        if ray_python is None:
            print(f"Ray Tune is unavailable ({ray_why}): its strategies are left out.", flush=True)
    started = time.time()
    print(f"# AutoML at equal compute: tasks {', '.join(names)}; seeds {seeds[0]}..{seeds[-1]}; concurrency {a.concurrency}; "
          f"cpu count {os.cpu_count()}", flush=True)
    ours = Ours(a.concurrency) if any(s in OURS for s in strategies) else None
    results: dict = {"tasks": {}, "args": {k: str(v) for k, v in vars(a).items()}}
    our_runs = []
    try:
        if ours and not a.no_overhead and not a.smoke:
            util = [utilisation(ours, m, trials=4, epochs=UTIL_EPOCHS, hold=UTIL_HOLD, arrive=UTIL_ARRIVE, timeout=240)
                    for m in a.util_modes.split(",")]
            results["utilisation"] = util
            results["shipping_lag"] = shipping_lag(ours)
            print(f"\n### Slot utilisation (2 slots; a 4-trial CNN study of {UTIL_EPOCHS} epochs a trial; another user's "
                  f"{UTIL_HOLD:g} s session arriving {UTIL_ARRIVE:g} s after the first trial runs)\n")
            print("| mode | wall s | busy slot-s | utilisation | useful epochs / planned | competitor waited s | relaunch s |")
            print("|---|---|---|---|---|---|---|")
            for u in util:
                log(f"{u['mode']}: timeline {u['timeline']}; acted {u['acted'] and {k: v for k, v in u['acted'].items() if k != 'answer'}}")
                rl = u["resume"].get("started_to_first_report")
                cw = u["competitor_wait"]
                print(f"| {u['mode']} | {u['wall']:.1f} | {u['busy_slot_s']:.1f} | {u['utilisation']:.2f} | "
                      f"{u['useful_epochs']}/{u['planned_epochs']} | {'n/a' if cw is None else f'{cw:.1f}'} | "
                      f"{'n/a' if rl is None else f'{rl:.2f}'} |")
        if ours and "ours-pbt" in strategies:
            ours.pbt_ok, why = ours.pbt_works()
            if not ours.pbt_ok:
                print(f"ours-pbt is not available on this checkout ({why}): left out.", flush=True)
        raw: dict = {t: {} for t in names}
        notes: dict = {t: {} for t in names}
        chunks = [seeds[i:i + a.chunk] for i in range(0, len(seeds), a.chunk)]
        done_seeds = []
        for c, chunk in enumerate([] if a.no_search else chunks):  # every task and strategy gets a chunk of seeds before the next chunk
            if c and a.max_minutes and time.time() - started > a.max_minutes * 60:
                print(f"(--max-minutes {a.max_minutes:g} passed: seeds {chunk[0]}.. were not run)", flush=True)
                break
            for task in names:
                cls = tasks.TASKS[task]
                budget = a.budget or 3 * cls.max_epochs
                for strategy in strategies:
                    if strategy == "ours-pbt" and not (ours and ours.pbt_ok):
                        notes[task][strategy] = "not available"
                        continue
                    if strategy.startswith("ray-") and ray_python is None:
                        notes[task][strategy] = "Ray unavailable"
                        continue
                    runs = []
                    if strategy in OURS:
                        for seed in chunk:
                            log(f"{task} {strategy} seed {seed} ({time.time() - started:.0f} s in)")
                            run = ours.run(strategy, task, seed, budget, a.timeout)
                            run["seed"] = seed
                            runs.append(run)
                            our_runs.append(run)
                    else:
                        log(f"{task} {strategy} seeds {chunk} ({time.time() - started:.0f} s in)")
                        python = ray_python if strategy.startswith("ray-") else sys.executable
                        runs = run_peer(python, strategy, task, chunk, budget, a.concurrency, a.timeout)
                    raw[task].setdefault(strategy, []).extend({**score(r, budget, cls.target), "seed": r.get("seed")} for r in runs)
            done_seeds += chunk
            if a.json:  # what has run so far, in case the rest does not
                a.json.write_text(json.dumps({"partial": True, "seeds": done_seeds, "runs": raw}, default=str))
        for task in ([] if a.no_search else names):
            cls = tasks.TASKS[task]
            budget = a.budget or 3 * cls.max_epochs
            rows = {}
            for strategy in strategies:
                if strategy in notes[task]:
                    rows[strategy] = {"note": notes[task][strategy]}
                else:
                    scores = raw[task].get(strategy, [])
                    rows[strategy] = summarise(scores) if scores else {"note": "failed"}
            print()
            print(table(task, rows, budget, cls.target), flush=True)
            results["tasks"][task] = {"budget": budget, "target": cls.target, "max_epochs": cls.max_epochs,
                                      "summary": rows, "runs": raw[task]}
        results["seeds_run"] = done_seeds
        if ours and our_runs:
            ov = overhead(our_runs)
            if "shipping_lag" in results:
                ov["shipping_lag"] = results["shipping_lag"]
            results["overhead"] = ov
            print("\n### The platform's own time per trial (our runs; seconds)\n")
            print("| part | median | IQR | p95 | n |\n|---|---|---|---|---|")
            for k, v in ov.items():
                if isinstance(v, dict) and v:
                    print(f"| {k} | {v['median']:.3f} | {v['q1']:.3f}-{v['q3']:.3f} | {v['p95']:.3f} | {v['n']} |")
            print(f"\nplatform overhead per trial (hand-over gap + ask->created + created->started + started->process): "
                  f"{ov['platform_per_trial_median']:.3f} s (goal <= 1 s: {'met' if ov['platform_per_trial_median'] <= 1 else 'not met'})")
    finally:
        if ours:
            ours.close()
    results["wall_s"] = time.time() - started
    verdict = goals(results)
    results["goals"] = verdict
    print("\n### Goals\n")
    for line in verdict:
        print("- " + line)
    print(f"\n(whole benchmark: {results['wall_s']:.0f} s)")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


def goals(results: dict) -> list[str]:
    out = []
    for task, t in results["tasks"].items():
        rows = {k: v for k, v in t["summary"].items() if "best_median" in v}
        ours = {k: v["best_median"] for k, v in rows.items() if k in OURS}
        peers = {k: v["best_median"] for k, v in rows.items() if k not in OURS}
        if ours and peers:
            best = max(ours, key=ours.get)
            beaten = [p for p, v in peers.items() if v > ours[best]]
            out.append(f"{task}: our best ({best}, {ours[best]:.4f}) >= every peer's median: "
                       f"{'met' if not beaten else 'not met (' + ', '.join(f'{p} {peers[p]:.4f}' for p in beaten) + ')'}")
    ov = results.get("overhead")
    if ov:
        out.append(f"overhead <= 1 s a trial: {'met' if ov['platform_per_trial_median'] <= 1 else 'not met'} "
                   f"({ov['platform_per_trial_median']:.2f} s)")
    util = {u["mode"]: u for u in results.get("utilisation", [])}
    if "stop-and-go" in util and "static" in util:
        sg, st = util["stop-and-go"]["utilisation"], util["static"]["utilisation"]
        out.append(f"stop-and-go raises utilisation: {'met' if sg > st else 'not met'} ({st:.2f} without -> {sg:.2f} with)")
    return out or ["no goal could be judged from what was run"]


if __name__ == "__main__":
    sys.exit(main())
