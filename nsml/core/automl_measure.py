"""What a trial is compared by (spec §6): the value of the study's measure reported with, or
last before, each `nsml.save` — a checkpoint's summary holds the values reported up to it — taken
every `step` units of the reported unit (`step: {epoch: 5}`: at epochs 5, 10, …; the first save
at or past each multiple counts). Pure: checkpoint summaries in, compare points out."""

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidInput

# Compare steps a trial is followed for, at most: a script reporting epoch 1e18 must not have the
# server count to it (a trial's code is hostile: nsml.core.automl_measure runs on the server).
MAX_COMPARE_STEPS = 1000


def measure_at_saves(summaries: Iterable[Mapping[str, Any]], measure: str) -> list[float]:
    """The measure at each save, in save order, where it had been reported (finite numbers only)."""
    out = []
    for summary in summaries:
        value = summary.get(measure)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out.append(float(value))
    return out


def compare_points(summaries: Iterable[Mapping[str, Any]], measure: str, step: tuple[str, int] | None) -> list[tuple[int, float]]:
    """(k, value) for each compare step k = 1, 2, … reached: the measure at the first save whose
    `unit` is at or past k × every. With no step (never compared mid-run), none."""
    return [(k, value) for k, value, _ in _compare(summaries, measure, step)]


def save_at_step(summaries: Iterable[Mapping[str, Any]], measure: str, step: tuple[str, int] | None, k: int) -> int | None:
    """The index of the save that answered compare step k (PBT copies that save, not a later
    one: the donor may have trained on, even to its end, since it was compared); None if none did."""
    return next((i for kk, _, i in _compare(summaries, measure, step) if kk == k), None)


def _compare(summaries, measure: str, step: tuple[str, int] | None):
    """(k, value, index of the save) for each compare step reached."""
    if step is None:
        return
    unit, every = step
    reached, next_at = 0, every
    for i, summary in enumerate(summaries):
        at, value = summary.get(unit), summary.get(measure)
        if not (isinstance(at, (int, float)) and isinstance(value, (int, float))) or isinstance(value, bool):
            continue
        if not (math.isfinite(at) and math.isfinite(value)):
            continue
        # A save may jump several multiples at once (a coarse save interval): it answers each of them.
        while at + 1 >= next_at and reached < MAX_COMPARE_STEPS:  # epochs count from 0: epoch 4 is the fifth
            yield next_at // every, float(value), i
            reached += 1
            next_at += every


def check_reported(measure: str, reported: Iterable[str], where: str = "the study") -> None:
    """At the first compare step: a measure no trial reported stops the study, naming the keys
    the trials did report (so `test/acc` vs `test/accuracy` is seen at once)."""
    keys = sorted(set(reported))
    if measure not in keys:
        shown = ", ".join(keys[:20]) + ("…" if len(keys) > 20 else "") if keys else "none"
        raise InvalidInput(f"{where}: the measure {measure} was never reported by its trials; they reported: {shown}. "
                           "Fix `measure` in the config (or report it with nsml.report before nsml.save).")
