"""The AutoML benchmark's peers (bench/automl_compare.py), one search per call, run as a
subprocess so each gets a clean interpreter:

    python bench/_automl_peers.py optuna-tpe-hyperband mlp SEEDS BUDGET CONCURRENCY
    /path/to/peers-venv/bin/python bench/_automl_peers.py ray-asha-random mlp SEEDS BUDGET CONCURRENCY

- optuna-tpe-hyperband: Optuna in-process (TPESampler + HyperbandPruner), `concurrency` worker
  processes sharing one study through Optuna's journal file storage;
- ray-asha-random, ray-asha-optuna, ray-pbt: Ray Tune's ASHAScheduler with its random search or
  OptunaSearch, and PopulationBasedTraining, `concurrency` trials at once (ray.init(num_cpus=…),
  one CPU a trial), on loopback.

Equal compute: every strategy may run BUDGET trial-epochs in all; an epoch past the budget is
never started (Optuna's workers take a shared count before each epoch; Ray's stopper ends the
experiment once BUDGET results came, and any result past it is cut by the caller). The last line
printed is `RESULT {json}`: events [[walltime, val_acc, trial], ...], t0 (the walltime the search
started at), setup_s (imports, Ray's start), trials.
"""

import json
import math
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("OMP_NUM_THREADS", "1")

import _automl_tasks as tasks  # noqa: E402


# -- Optuna ---------------------------------------------------------------------------------------
def _suggest(trial, space: dict) -> dict:
    out = {}
    for name, p in space.items():
        a = p["parameters"]
        if p["distribution"] == "categorical":
            out[name] = trial.suggest_categorical(name, a)
        elif p["type"] == "int":
            out[name] = trial.suggest_int(name, int(a[0]), int(a[1]), log=p["distribution"] == "log_uniform")
        else:
            out[name] = trial.suggest_float(name, float(a[0]), float(a[1]), log=p["distribution"] == "log_uniform")
    return out


def _optuna_worker(storage_path, name, task, seed, worker, budget, counter, lock, events):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cls = tasks.TASKS[task]
    study = optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(storage_path)),
                              sampler=optuna.samplers.TPESampler(seed=seed * 100 + worker),
                              pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=cls.max_epochs))

    def objective(trial):
        trainer = cls(_suggest(trial, cls.space), seed=trial.number)
        score = float("nan")
        while trainer.epochs < cls.max_epochs:
            with lock:
                if counter.value >= budget:
                    break
                counter.value += 1
            score = trainer.epoch()
            events.put((time.time(), score, trial.number))
            trial.report(score, trainer.epochs)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if math.isnan(score):
            raise optuna.TrialPruned()  # the budget was spent before it ran an epoch
        return score

    while counter.value < budget:
        study.optimize(objective, n_trials=1)


def run_optuna(task: str, seed: int, budget: int, concurrency: int) -> dict:
    import multiprocessing as mp

    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    t0 = time.time()
    folder = tempfile.mkdtemp(prefix="nsml-bench-optuna-")
    path = os.path.join(folder, "journal.log")
    optuna.create_study(study_name="bench", storage=JournalStorage(JournalFileBackend(path)), direction="maximize")
    ctx = mp.get_context("spawn")
    counter, lock, events = ctx.Value("i", 0), ctx.Lock(), ctx.Queue()
    workers = [ctx.Process(target=_optuna_worker, args=(path, "bench", task, seed, w, budget, counter, lock, events))
               for w in range(concurrency)]
    for w in workers:
        w.start()
    got = []
    deadline = time.time() + float(os.environ.get("BENCH_PEER_TIMEOUT", "900"))
    while any(w.is_alive() for w in workers) or not events.empty():
        try:
            got.append(events.get(timeout=0.2))
        except Exception:  # queue.Empty
            pass
        if time.time() > deadline:
            for w in workers:
                w.kill()
            break
    for w in workers:
        w.join(10)
    trials = len({e[2] for e in got})
    return {"events": got, "t0": t0, "setup_s": 0.0, "trials": trials}


# -- Ray Tune -------------------------------------------------------------------------------------
def _ray_space(space: dict) -> dict:
    from ray import tune

    out = {}
    for name, p in space.items():
        a = p["parameters"]
        if p["distribution"] == "categorical":
            out[name] = tune.choice(a)
        elif p["type"] == "int":
            out[name] = (tune.lograndint if p["distribution"] == "log_uniform" else tune.randint)(int(a[0]), int(a[1]) + 1)
        else:
            out[name] = (tune.loguniform if p["distribution"] == "log_uniform" else tune.uniform)(float(a[0]), float(a[1]))
    return out


def start_ray(concurrency: int) -> float:
    """Ray started once for all the seeds of a call; the seconds it took."""
    start = time.time()
    import ray

    ray.init(num_cpus=concurrency, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1",
             object_store_memory=80 * 1024 * 1024, runtime_env={"env_vars": {"PYTHONPATH": HERE, "OMP_NUM_THREADS": "1"}},
             logging_level="ERROR")
    return time.time() - start


def run_ray(strategy: str, task: str, seed: int, budget: int, concurrency: int) -> dict:
    start = time.time()
    import random

    import numpy as np
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining
    from ray.tune.search.basic_variant import BasicVariantGenerator

    cls = tasks.TASKS[task]
    pbt = strategy == "ray-pbt"
    random.seed(seed)
    np.random.seed(seed)
    events = []

    class Collect(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "acc" in result:
                events.append((result["t"], result["acc"], trial.trial_id))

    class Budget(tune.Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return len(events) >= budget

    def trainable(config):
        sys.path.insert(0, HERE)
        import _automl_tasks as t

        trainer = t.TASKS[task]({k: config[k] for k in cls.space}, seed=config.get("trial_seed", 0))
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                with open(os.path.join(d, "state.bin"), "rb") as f:
                    trainer.restore(f.read())
        while trainer.epochs < cls.max_epochs:
            score = trainer.epoch()
            metrics = {"acc": score, "t": time.time(), "epoch": trainer.epochs}
            if pbt:
                with tempfile.TemporaryDirectory() as d:
                    with open(os.path.join(d, "state.bin"), "wb") as f:
                        f.write(trainer.state())
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report(metrics)

    space = _ray_space(cls.space)
    space["trial_seed"] = tune.randint(0, 1 << 30)
    if pbt:
        mutations = {k: v for k, v in space.items() if k != "trial_seed" and cls.space[k]["distribution"] != "categorical"
                     and cls.space[k]["type"] == "float"}
        scheduler = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=2,
                                            hyperparam_mutations=mutations)
        search, samples = BasicVariantGenerator(random_state=seed), max(concurrency, budget // cls.max_epochs)
    else:
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=cls.max_epochs, grace_period=1, reduction_factor=4)
        samples = budget
        if strategy == "ray-asha-optuna":
            from ray.tune.search.optuna import OptunaSearch

            search = OptunaSearch(seed=seed)
        else:
            search = BasicVariantGenerator(random_state=seed)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}), param_space=space,
        tune_config=tune.TuneConfig(metric="acc", mode="max", scheduler=scheduler, search_alg=search, num_samples=samples,
                                    max_concurrent_trials=concurrency),
        run_config=tune.RunConfig(stop=Budget(), callbacks=[Collect()], verbose=0,
                                  storage_path=tempfile.mkdtemp(prefix="nsml-bench-ray-"),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2) if pbt else None))
    t0 = time.time()
    tuner.fit()
    return {"events": events, "t0": t0, "setup_s": t0 - start, "trials": len({e[2] for e in events})}


def main(argv: list[str]) -> None:
    """SEEDS is one seed or several joined by commas (Ray is started once for them all): one
    RESULT line each, with its seed."""
    strategy, task, seeds, budget, concurrency = argv[0], argv[1], argv[2], int(argv[3]), int(argv[4])
    if strategy not in ("optuna-tpe-hyperband", "ray-asha-random", "ray-asha-optuna", "ray-pbt"):
        raise SystemExit(f"unknown peer strategy {strategy}")
    setup = start_ray(concurrency) if strategy.startswith("ray-") else 0.0
    for seed in map(int, seeds.split(",")):
        if strategy == "optuna-tpe-hyperband":
            out = run_optuna(task, seed, budget, concurrency)
        else:
            out = run_ray(strategy, task, seed, budget, concurrency)
            out["setup_s"] += setup
        out["seed"] = seed
        print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
