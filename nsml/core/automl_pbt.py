"""Population based training's two moves (spec §6, `tune.pbt`; issue 16), pure: which trial a
lagging one copies (exploit: `truncation`) and how the copy's hyper-parameters change (explore:
`perturb` or `resample`). The driver forks the chosen trial's latest checkpoint with the new
hyper-parameters (nsml.server.automl.driver); this module only decides.

Asynchronous, as NSML's agent is: a trial is compared when it reaches a compare step, against
every trial that has reached the same step, so nobody waits for a generation to finish."""

import math
import random
from collections.abc import Mapping
from typing import Any

from .automl_config import HParam, StudyConfig

QUANTILE = 0.25  # truncation: the bottom quarter copies the top quarter (Jaderberg et al., 2017)
PERTURB = (0.8, 1.2)  # explore: each number multiplied by one of these
RESAMPLE_P = 0.25  # perturb: the chance a categorical choice is drawn afresh


def exploit(values_at_step: Mapping[int, float], me: int, direction: str, rng: random.Random) -> int | None:
    """The trial `me` should copy at this compare step, or None to go on as it is: when it is in
    the bottom quarter of the trials that reached the step (two at least), one of the top
    quarter's, at random."""
    if me not in values_at_step or len(values_at_step) < 2:
        return None
    ranked = sorted(values_at_step, key=lambda n: (values_at_step[n], -n), reverse=direction == "maximize")
    cut = max(1, int(math.floor(len(ranked) * QUANTILE)))
    if me not in ranked[-cut:]:
        return None
    top = [n for n in ranked[:cut] if n != me]
    return rng.choice(top) if top else None


def explore(config: StudyConfig, params: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """The copy's hyper-parameters: each perturbed (numbers × 0.8 or × 1.2, kept within
    p_range or the range; a categorical one redrawn now and then) or, with `resample`, drawn
    afresh from its distribution."""
    how = config.pbt.get("explore", "perturb")
    return {p.name: (_resample(p, rng) if how == "resample" else _perturb(p, params[p.name], rng)) for p in config.h_params}


def _perturb(p: HParam, value, rng: random.Random):
    if p.distribution == "categorical":
        return rng.choice(p.parameters) if rng.random() < RESAMPLE_P else value
    new = value * rng.choice(PERTURB)
    if p.type == "int":  # a whole number moves by at least one
        new = int(round(new))
        if new == value:
            new = value + (1 if rng.random() < 0.5 else -1)
    bounds = p.bounds
    if bounds is not None:
        low, high = bounds
        new = min(high, max(low, new))
    return int(new) if p.type == "int" else float(new)


def _resample(p: HParam, rng: random.Random):
    if p.distribution == "categorical":
        return rng.choice(p.parameters)
    if p.distribution in ("normal", "log_normal"):
        mean, sd = p.parameters
        value = rng.gauss(mean, sd)
        value = math.exp(value) if p.distribution == "log_normal" else value
        if p.p_range:
            value = min(p.p_range[1], max(p.p_range[0], value))
    else:
        low, high = p.parameters
        value = math.exp(rng.uniform(math.log(low), math.log(high))) if p.distribution == "log_uniform" else rng.uniform(low, high)
    return int(round(value)) if p.type == "int" else float(value)
