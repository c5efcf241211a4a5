"""A study's search space, sampler and trial scheduler as Optuna's (issue 16): Optuna's samplers
through its ask-and-tell interface, never rewritten. Optuna is imported here only, lazily: a
server that runs no study never loads it.

Mapping of NSML's distributions (nsml.core.automl_config):
- uniform -> FloatDistribution / IntDistribution(low, high);
- log_uniform -> the same with log=True;
- categorical -> CategoricalDistribution(choices);
- normal [mean, sd] -> a FloatDistribution (IntDistribution for type int) over p_range, or
  mean +- 3 sd; the model-based samplers search that range, and the `random` algorithm draws
  from the normal itself (`normal_draw`), so its trials have the prior the config asks for;
- log_normal [mu, sigma] (of the log) -> the same on exp(mu +- 3 sigma) with log=True.

Algorithms: random (RandomSampler), grid (GridSampler over every choice and every whole number
of an int range), tpe (TPESampler), cmaes (CmaEsSampler, the `cmaes` package), gp (GPSampler:
torch and scipy), qmc (QMCSampler: scipy). Trial schedulers: median (MedianPruner), asha
(SuccessiveHalvingPruner), hyperband (HyperbandPruner), none; pbt is ours (exploit/explore by
forking), not a pruner.
"""

import importlib
import math
import random
from typing import Any

from nsml.core.automl_config import HParam, StudyConfig
from nsml.core.errors import InvalidInput

MAX_GRID = 100_000  # points of a grid study's space at most


def distribution(p: HParam):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.distribution == "categorical":
        return CategoricalDistribution(list(p.parameters))
    low, high, log = _range(p)
    if p.type == "int":
        return IntDistribution(int(math.ceil(low)), int(math.floor(high)), log=log)
    return FloatDistribution(low, high, log=log)


def _range(p: HParam) -> tuple[float, float, bool]:
    if p.distribution in ("uniform", "log_uniform"):
        low, high = p.parameters
        return float(low), float(high), p.distribution == "log_uniform"
    mean, sd = p.parameters
    if p.p_range:
        low, high = p.p_range
    else:
        low, high = mean - 3 * sd, mean + 3 * sd
    if p.distribution == "log_normal":
        return (math.exp(low), math.exp(high), True) if not p.p_range else (low, high, True)
    return low, high, False


def space(config: StudyConfig) -> dict[str, Any]:
    """{name: Optuna distribution} of every h_param, in the config's order."""
    return {p.name: distribution(p) for p in config.h_params}


def grid(config: StudyConfig) -> dict[str, list]:
    """GridSampler's search space: every choice, every whole number of an int range."""
    out, size = {}, 1
    for p in config.h_params:
        if p.distribution == "categorical":
            values = list(p.parameters)
        elif p.type == "int":
            low, high, _ = _range(p)
            values = list(range(int(math.ceil(low)), int(math.floor(high)) + 1))
        else:
            raise InvalidInput(f"algorithm grid needs a finite space, but h_params.{p.name} is a continuous range.")
        size *= len(values)
        out[p.name] = values
    if size > MAX_GRID:
        raise InvalidInput(f"The grid has {size:,} points, more than {MAX_GRID:,}; list fewer values or use another algorithm.")
    return out


def sampler(config: StudyConfig, seed: int | None = None):
    """The Optuna sampler of the config's algorithm; InvalidInput when a package it needs is
    missing (one line saying which)."""
    import optuna

    name = config.algorithm
    try:
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "grid":
            return _grid_sampler()(grid(config), seed=seed)
        if name == "tpe":
            return optuna.samplers.TPESampler(seed=seed)
        if name == "cmaes":
            importlib.import_module("cmaes")  # CmaEsSampler needs it, and says so only when first used

            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
        if name == "gp":
            importlib.import_module("scipy")
            importlib.import_module("torch")

            return optuna.samplers.GPSampler(seed=seed)
        if name == "qmc":
            importlib.import_module("scipy")

            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    except ImportError as exc:
        raise InvalidInput(f"algorithm {name} needs the Python package {exc.name}, which this server does not have "
                           f"(pip install {exc.name}).") from None
    raise InvalidInput(f"Unknown algorithm {name!r}.")


def _grid_sampler():
    import optuna

    class Grid(optuna.samplers.GridSampler):
        """GridSampler without its stop: once every point was tried it calls study.stop(),
        which raises outside study.optimize (ask-and-tell) and would leave the last trial
        untold. The driver stops asking at the grid's size instead (grid_size)."""

        def after_trial(self, study, trial, state, values) -> None:
            return None

    return Grid


def grid_size(config: StudyConfig) -> int | None:
    """How many trials a grid study has (None for the other algorithms)."""
    if config.algorithm != "grid":
        return None
    return math.prod(len(v) for v in grid(config).values())


def pruner(config: StudyConfig):
    """The trial scheduler deciding stops at each compare step: NopPruner for none and pbt
    (create_study would otherwise put its default MedianPruner in)."""
    import optuna

    return {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=max(1, config.population // 2), n_warmup_steps=0),
        "asha": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(),
    }.get(config.scheduler, optuna.pruners.NopPruner)()


def normal_draw(p: HParam, rng: random.Random) -> float | int:
    """A value of a normal or log-normal h_param from its prior, within its bounds (redrawn
    a few times, then clamped)."""
    low, high, _ = _range(p)
    mean, sd = p.parameters
    value = mean
    for _ in range(16):
        value = rng.gauss(mean, sd)
        if p.distribution == "log_normal":
            value = math.exp(value)
        if low <= value <= high:
            break
    value = min(high, max(low, value))
    return int(round(value)) if p.type == "int" else value


def new_study(config: StudyConfig, seed: int | None = None):
    """An in-memory Optuna study for the config: the platform's store keeps the trials (and
    replays them into a fresh study after a restart, `replay`), Optuna decides."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(direction=config.direction, sampler=sampler(config, seed), pruner=pruner(config))


def ask(study, config: StudyConfig, rng: random.Random):
    """The next trial and its arguments ({name: value}), sampled by the study's sampler; with
    the random algorithm, normal h_params come from their prior (enqueued as fixed values)."""
    normals = {p.name: normal_draw(p, rng) for p in config.h_params if p.distribution in ("normal", "log_normal")}
    if normals and config.algorithm == "random":
        study.enqueue_trial(normals, skip_if_exists=False)
    trial = study.ask(space(config))
    return trial, dict(trial.params)


def replay(study, config: StudyConfig, finished: list[tuple[dict[str, Any], float | None, dict[int, float], str]]) -> None:
    """Put trials the store kept back into a new study (after a server restart), so the sampler
    sees the same history: (params, final value or None, {step: intermediate value}, state)
    with state one of complete, pruned, fail."""
    import optuna
    from optuna.trial import TrialState, create_trial

    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "fail": TrialState.FAIL}
    dist = space(config)
    for params, value, steps, state in finished:
        kept = {k: v for k, v in params.items() if k in dist}
        try:
            study.add_trial(create_trial(params=kept, distributions={k: dist[k] for k in kept},
                                         value=value if states[state] == TrialState.COMPLETE else None,
                                         intermediate_values=steps, state=states[state]))
        except (ValueError, optuna.exceptions.OptunaError):
            continue  # a trial of an earlier space (the config was changed): not this study's history
