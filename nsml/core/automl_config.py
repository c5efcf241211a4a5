"""An AutoML study's configuration (spec §6, issue 16), read from NSML's format and checked
before anything runs: one clear line naming the key for anything that does not fit.

    h_params:
      lr:    {parameters: [0.001, 0.009], distribution: log_uniform, type: float, p_range: [0.0001, 0.1]}
      depth: {parameters: [5, 10], distribution: uniform, type: int}
      act:   {parameters: [relu, tanh], distribution: categorical, type: str}
    entry: main.py
    args: "--epochs 20"
    dataset: mnist
    population: 5                 # trials running at once, at most
    step: {epoch: 5}              # compare every 5 reported epochs (-1: never)
    order: descending             # the measure is better higher (ascending: lower)
    measure: test/accuracy        # `test__accuracy` means the same
    algorithm: tpe                # random (default), grid, tpe, cmaes, gp, qmc: Optuna's samplers
    scheduler: asha               # none (default), median, asha, hyperband, pbt
    tune: {pbt: {exploit: truncation, explore: perturb, fork: true}}   # NSML's; fork true means pbt
    resources: {gpus: 1, cpus: 2, memory: 24G, shm-size: 1G}
    termination: {max_session_number: 50, max_wall_time: 12h, max_gpu_hours: 100}
    preemptible: true             # trials fill idle GPUs; paused and requeued when regular work needs them

Pure: plain data in, a frozen StudyConfig out; nothing here imports Optuna.
"""

import math
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidInput
from .resources import parse_duration, parse_size

DISTRIBUTIONS = ("uniform", "log_uniform", "categorical", "normal", "log_normal")
TYPES = ("float", "int", "str", "bool")
ALGORITHMS = ("random", "grid", "tpe", "cmaes", "gp", "qmc")
SCHEDULERS = ("none", "median", "asha", "hyperband", "pbt")
EXPLOITS = ("truncation",)
EXPLORES = ("perturb", "resample")
KEYS = {"h_params", "entry", "args", "dataset", "population", "step", "order", "measure", "algorithm", "scheduler", "preemptible",
        "tune", "agent_gpus", "resources", "termination", "nfs-output", "memo"}
MAX_PARAMS = 64
MAX_POPULATION = 256
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class HParam:
    name: str
    distribution: str
    type: str
    parameters: tuple  # (low, high) for ranges, (mean, sd) for normal ones, the choices for categorical
    p_range: tuple = ()  # how far PBT's perturbation may go ((low, high); empty: the parameters' range)

    @property
    def bounds(self) -> tuple[float, float] | None:
        """Where a sampled value must lie: p_range if given, else the range; None for categorical
        and unbounded normal parameters."""
        if self.p_range:
            return self.p_range
        if self.distribution in ("uniform", "log_uniform"):
            return self.parameters
        return None


@dataclass(frozen=True)
class StudyConfig:
    h_params: tuple[HParam, ...]
    measure: str  # with `/`, as reported (`__` in the config means `/`)
    direction: str  # "maximize" (order: descending) or "minimize" (ascending)
    entry: str = "main.py"
    args: str = ""
    dataset: str = ""
    population: int = 1
    step: tuple[str, int] | None = None  # (unit, every N) or None: never compared mid-run
    algorithm: str = "random"
    scheduler: str = "none"
    pbt: dict[str, Any] = field(default_factory=dict)  # exploit, explore, fork
    resources: dict[str, Any] = field(default_factory=dict)  # gpus, cpus, memory (bytes), shm_size (bytes)
    max_trials: int | None = None
    max_wall_time: float | None = None  # seconds
    max_gpu_hours: float | None = None
    preemptible: bool = False  # trials fill idle GPUs and are paused and requeued when regular work needs them


def parse_config(data, where: str = "the AutoML config") -> StudyConfig:
    """The study a config describes; InvalidInput (one line, naming `where` and the key) if it
    is not one."""
    if not isinstance(data, dict):
        raise InvalidInput(f"{where} must be a mapping with h_params, measure and order (spec §6).")
    unknown = set(map(str, data)) - KEYS
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; a config has {', '.join(sorted(KEYS))}.")
    params = _h_params(data.get("h_params"), where)
    measure = data.get("measure")
    if not isinstance(measure, str) or not measure.strip():
        raise InvalidInput(f"{where}: `measure` is the reported key the trials are compared by, e.g. test/accuracy.")
    measure = measure.strip().replace("__", "/")
    order = data.get("order", "descending")
    if order not in ("ascending", "descending"):
        raise InvalidInput(f"{where}: `order` is descending (higher {measure} is better) or ascending, not {order!r}.")
    algorithm = _choice(data, "algorithm", ALGORITHMS, "random", where)
    tune = data.get("tune") or {}
    pbt = _pbt(tune, where)
    scheduler = _choice(data, "scheduler", SCHEDULERS, "pbt" if pbt.get("fork") else "none", where)
    if scheduler == "pbt" and not pbt:
        pbt = {"exploit": "truncation", "explore": "perturb", "fork": True}
    if algorithm == "grid" and any(p.distribution not in ("categorical",) and p.type not in ("int", "bool") for p in params):
        bad = next(p.name for p in params if p.distribution != "categorical" and p.type not in ("int", "bool"))
        raise InvalidInput(f"{where}: algorithm grid needs a finite space, but h_params.{bad} is a continuous range; "
                           "make it categorical (its values listed) or use another algorithm.")
    population = _whole(data.get("population", 1), f"{where}: population", 1, MAX_POPULATION)
    termination = data.get("termination") or {}
    if not isinstance(termination, dict) or set(termination) - {"max_session_number", "max_wall_time", "max_gpu_hours"}:
        raise InvalidInput(f"{where}: termination has max_session_number, max_wall_time (e.g. 12h) and max_gpu_hours.")
    max_trials = termination.get("max_session_number")
    wall = termination.get("max_wall_time")
    gpu_hours = termination.get("max_gpu_hours")
    return StudyConfig(
        h_params=params, measure=measure, direction="maximize" if order == "descending" else "minimize",
        entry=_text(data, "entry", "main.py", where), args=_text(data, "args", "", where),
        dataset=_text(data, "dataset", "", where), population=population, step=_step(data.get("step"), where),
        algorithm=algorithm, scheduler=scheduler, pbt=pbt, resources=_resources(data.get("resources"), where),
        max_trials=None if max_trials is None else _whole(max_trials, f"{where}: termination.max_session_number", 1, MAX_TRIALS),
        max_wall_time=None if wall is None else _duration(wall, f"{where}: termination.max_wall_time"),
        max_gpu_hours=None if gpu_hours is None else _positive(gpu_hours, f"{where}: termination.max_gpu_hours"),
        preemptible=_flag(data, "preemptible", where),
    )


def _h_params(data, where: str) -> tuple[HParam, ...]:
    if not isinstance(data, dict) or not data:
        raise InvalidInput(f"{where}: `h_params` maps each hyper-parameter's name to its parameters, distribution and type.")
    if len(data) > MAX_PARAMS:
        raise InvalidInput(f"{where}: at most {MAX_PARAMS} h_params, not {len(data)}.")
    return tuple(_h_param(str(name), spec, f"{where}: h_params.{name}") for name, spec in data.items())


def _h_param(name: str, spec, where: str) -> HParam:
    if not name.replace("_", "a").replace("-", "a").isalnum() or name[0] == "-":
        raise InvalidInput(f"{where}: a hyper-parameter's name is passed as --{name}: letters, digits, _ and - only.")
    if not isinstance(spec, dict) or set(spec) - {"parameters", "distribution", "type", "p_range"}:
        raise InvalidInput(f"{where} is {{parameters, distribution, type, p_range}}.")
    distribution = spec.get("distribution", "uniform")
    if distribution not in DISTRIBUTIONS:
        raise InvalidInput(f"{where}: unknown distribution {distribution!r}; one of {', '.join(DISTRIBUTIONS)}.")
    kind = spec.get("type", "float")
    if kind not in TYPES:
        raise InvalidInput(f"{where}: unknown type {kind!r}; one of {', '.join(TYPES)}.")
    values = spec.get("parameters")
    if not isinstance(values, list) or not values:
        raise InvalidInput(f"{where}: `parameters` is a list: [low, high], [mean, sd], or the categorical choices.")
    if distribution == "categorical":
        choices = tuple(_typed(v, kind, where) for v in values)
        if len(set(map(repr, choices))) != len(choices):
            raise InvalidInput(f"{where}: a categorical choice is listed twice.")
        return HParam(name, distribution, kind, choices)
    if kind in ("str", "bool"):
        raise InvalidInput(f"{where}: a {distribution} distribution needs numbers; type {kind} fits categorical only.")
    if len(values) != 2 or not all(_number(v) for v in values):
        raise InvalidInput(f"{where}: a {distribution} distribution's parameters are two numbers, not {values!r}.")
    a, b = (float(v) for v in values)
    if distribution in ("normal", "log_normal"):
        if b <= 0:
            raise InvalidInput(f"{where}: a {distribution} distribution's parameters are [mean, sd] with sd > 0, not {values!r}.")
    else:
        if a >= b:
            raise InvalidInput(f"{where}: parameters [{values[0]}, {values[1]}] is reversed or empty; write [low, high] with low < high.")
        if distribution == "log_uniform" and a <= 0:
            raise InvalidInput(f"{where}: a log_uniform range must be above 0, not from {values[0]}.")
        if kind == "int" and (a != int(a) or b != int(b)):
            raise InvalidInput(f"{where}: type int needs whole bounds, not {values!r}.")
    p_range = _p_range(spec.get("p_range"), (a, b) if distribution in ("uniform", "log_uniform") else None, where)
    return HParam(name, distribution, kind, (int(a), int(b)) if kind == "int" and distribution in ("uniform", "log_uniform") else (a, b), p_range)


def _p_range(raw, inner: tuple[float, float] | None, where: str) -> tuple:
    if raw in (None, []):
        return ()
    if not isinstance(raw, list) or len(raw) != 2 or not all(_number(v) for v in raw) or float(raw[0]) >= float(raw[1]):
        raise InvalidInput(f"{where}: p_range is [low, high] with low < high (or empty), not {raw!r}.")
    low, high = float(raw[0]), float(raw[1])
    if inner and (low > inner[0] or high < inner[1]):
        raise InvalidInput(f"{where}: p_range {raw!r} must contain the parameters' range [{inner[0]:g}, {inner[1]:g}].")
    return (low, high)


def _typed(value, kind: str, where: str):
    ok = {"int": isinstance(value, int) and not isinstance(value, bool), "float": _number(value),
          "str": isinstance(value, str), "bool": isinstance(value, bool)}[kind]
    if not ok:
        raise InvalidInput(f"{where}: {value!r} is not of type {kind}.")
    return float(value) if kind == "float" else value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pbt(tune, where: str) -> dict[str, Any]:
    if not isinstance(tune, dict) or set(tune) - {"pbt"}:
        raise InvalidInput(f"{where}: tune is {{pbt: {{exploit, explore, fork}}}}.")
    pbt = tune.get("pbt")
    if pbt is None:
        return {}
    if not isinstance(pbt, dict) or set(pbt) - {"exploit", "explore", "fork"}:
        raise InvalidInput(f"{where}: tune.pbt is {{exploit: truncation, explore: perturb|resample, fork: true|false}}.")
    exploit, explore, fork = pbt.get("exploit", "truncation"), pbt.get("explore", "perturb"), pbt.get("fork", False)
    if exploit not in EXPLOITS:
        raise InvalidInput(f"{where}: tune.pbt.exploit is one of {', '.join(EXPLOITS)}, not {exploit!r}.")
    if explore not in EXPLORES:
        raise InvalidInput(f"{where}: tune.pbt.explore is one of {', '.join(EXPLORES)}, not {explore!r}.")
    if not isinstance(fork, bool):
        raise InvalidInput(f"{where}: tune.pbt.fork is true (population based training) or false, not {fork!r}.")
    return {"exploit": exploit, "explore": explore, "fork": fork}


def _step(raw, where: str) -> tuple[str, int] | None:
    if raw is None or raw == -1:
        return None
    if not isinstance(raw, dict) or len(raw) != 1:
        raise InvalidInput(f"{where}: step is {{UNIT: N}}, e.g. {{epoch: 5}} (compare every 5 reported epochs), or -1.")
    (unit, every), = raw.items()
    if every == -1:
        return None
    return str(unit).replace("__", "/"), _whole(every, f"{where}: step.{unit}", 1, 10 ** 9)


def _resources(raw, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or set(raw) - {"gpus", "cpus", "memory", "shm-size"}:
        raise InvalidInput(f"{where}: resources has gpus, cpus, memory and shm-size.")
    out: dict[str, Any] = {}
    if "gpus" in raw:
        out["gpus"] = _whole(raw["gpus"], f"{where}: resources.gpus", 0, 1024)
    if "cpus" in raw:
        out["cpus"] = _positive(raw["cpus"], f"{where}: resources.cpus")
    for key, name in (("memory", "memory"), ("shm-size", "shm_size")):
        if key in raw:
            try:
                out[name] = parse_size(str(raw[key]))
            except InvalidInput:
                raise InvalidInput(f"{where}: resources.{key} is a size such as 24G, not {raw[key]!r}.") from None
    return out


def _flag(data, key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: {key} is true or false, not {value!r}.")
    return value


def _choice(data, key: str, allowed, default: str, where: str) -> str:
    value = data.get(key, default)
    if value not in allowed:
        raise InvalidInput(f"{where}: {key} is one of {', '.join(allowed)}, not {value!r}.")
    return value


def _text(data, key: str, default: str, where: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise InvalidInput(f"{where}: {key} is a text, not {value!r}.")
    return value.strip() if key != "args" else value


def _whole(value, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{where} is a whole number from {low} to {high}, not {value!r}.")
    return value


def _positive(value, where: str) -> float:
    if not _number(value) or value <= 0:
        raise InvalidInput(f"{where} is a number above 0, not {value!r}.")
    return float(value)


def _duration(value, where: str) -> float:
    try:
        seconds = parse_duration(str(value))
    except (ValueError, KeyError):
        raise InvalidInput(f"{where} is a duration such as 12h or 2d, not {value!r}.") from None
    if seconds <= 0:
        raise InvalidInput(f"{where} must be longer than 0.")
    return seconds


def trial_args(config: StudyConfig, params: dict[str, Any]) -> str:
    """A trial's command-line arguments: the study's `args`, then `--name value` for each
    hyper-parameter in the config's order (spec §6: the script reads them with argparse)."""
    import shlex

    parts = [config.args.strip()] if config.args.strip() else []
    for p in config.h_params:
        value = params[p.name]
        text = repr(value) if isinstance(value, float) else str(value)
        parts.append(f"--{p.name} {shlex.quote(text)}")
    return " ".join(parts)
