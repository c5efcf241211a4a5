"""What the study pages show (issue 16's visual analytics), computed from a study's config and
its trials: plain data in, plain JSON-ready data out. The web adapter (nsml/server/api/automl_web.py)
reads the store and calls these; nothing here touches a request or the store.

- history: each trial's value and the best so far, in trial order (optuna-dashboard's history);
- order: the parameters ordered by |Pearson r| of the parameter (log10 for a log-scale one,
  a choice's index for a categorical one) with the measure: the parallel coordinates' axes;
- importance: Optuna's fANOVA or PED-ANOVA evaluator over a study rebuilt in memory from the
  stored trials (space.new_study + space.replay); never our own;
- slices, contour, edf, intermediate values, timeline, lineage (PBT's parent links);
- rerun_config: the brushed ranges of the parallel coordinates as a new config, narrowed and
  checked with parse_config (HyperTendril's loop: look, narrow, run again).

Optuna is imported only by `importance` (through space), so a page that shows no importance
loads none of it.
"""

import math
from dataclasses import dataclass, field
from typing import Any

from nsml.core.automl_config import HParam, StudyConfig, parse_config
from nsml.core.errors import InvalidInput

METHODS = {"fanova": "fANOVA", "ped_anova": "PED-ANOVA"}
CONTOUR_GRID = 24  # cells a side of the contour's interpolated surface
MAX_LINEAGE_FRAMES = 200


@dataclass(frozen=True)
class TrialRow:
    """A trial as the pages see it: the stored trial and what its child session adds."""

    number: int
    params: dict[str, Any]
    state: str  # running, complete, pruned, fail
    value: float | None
    steps: dict[int, float] = field(default_factory=dict)
    parent: int | None = None
    created: float = 0.0
    started: float | None = None  # the child session's
    ended: float | None = None
    session: str = ""
    session_status: str = ""


def finite(v) -> bool:
    """A number that is not NaN or infinite (nor an int too large for a float)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def scored(trials: list[TrialRow]) -> list[TrialRow]:
    """Trials with a final value: complete ones (a pruned trial's last step is no final score)."""
    return [t for t in trials if t.state == "complete" and finite(t.value)]


def better(direction: str):
    return max if direction == "maximize" else min


# -- history, EDF, intermediate values, timeline -------------------------------------------------

def history(trials: list[TrialRow], direction: str) -> list[dict[str, Any]]:
    """[{number, value, best, state}] in trial order; best is the best complete value so far
    (None until the first)."""
    out, best = [], None
    pick = better(direction)
    for t in sorted(trials, key=lambda t: t.number):
        value = t.value if t.state == "complete" and finite(t.value) else None
        if value is not None:
            best = value if best is None else pick(best, value)
        out.append({"number": t.number, "value": value, "best": best, "state": t.state})
    return out


def edf(trials: list[TrialRow]) -> list[dict[str, float]]:
    """The empirical distribution of the complete trials' values: [{value, fraction}] ascending
    (the fraction of trials with a value at most this one)."""
    values = sorted(t.value for t in scored(trials))
    return [{"value": v, "fraction": (i + 1) / len(values)} for i, v in enumerate(values)]


def intermediate(trials: list[TrialRow]) -> list[dict[str, Any]]:
    """Each trial's measure at its compare steps (what the trial scheduler judged it by)."""
    return [{"number": t.number, "state": t.state, "steps": [k for k in sorted(t.steps)],
             "values": [t.steps[k] for k in sorted(t.steps)]} for t in sorted(trials, key=lambda t: t.number) if t.steps]


def timeline(trials: list[TrialRow], now: float) -> list[dict[str, Any]]:
    """When each trial's session ran: [{number, state, start, end, running}], `end` now for one
    still running; trials whose session never started are left out."""
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.started is None:
            continue
        out.append({"number": t.number, "state": t.state, "start": t.started, "end": t.ended if t.ended is not None else now,
                    "running": t.ended is None, "session": t.session})
    return out


# -- parameter values on numeric axes -------------------------------------------------------------

def log_scale(p: HParam) -> bool:
    return p.distribution in ("log_uniform", "log_normal")


def axis_value(p: HParam, value) -> float | None:
    """The value on the parameter's axis: log10 on a log scale, a choice's index for a
    categorical one; None when it has none (a trial of an earlier space)."""
    if p.distribution == "categorical":
        keys = [repr(c) for c in p.parameters]
        return float(keys.index(repr(value))) if repr(value) in keys else None
    if not finite(value):
        return None
    if log_scale(p):
        return math.log10(value) if value > 0 else None
    return float(value)


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r of two equally long series; None with fewer than 3 pairs or no spread."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    if sxx <= 0 or syy <= 0:
        return None
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def order(config: StudyConfig, trials: list[TrialRow]) -> list[dict[str, Any]]:
    """[{name, r}] of every h_param, the strongest |r| with the measure first (None, last, in
    the config's order, where there is too little to tell)."""
    rows = []
    done = scored(trials)
    for i, p in enumerate(config.h_params):
        pairs = [(axis_value(p, t.params.get(p.name)), t.value) for t in done]
        pairs = [(x, y) for x, y in pairs if x is not None]
        r = pearson([x for x, _ in pairs], [y for _, y in pairs])
        rows.append((-(abs(r)) if r is not None else 1.0, i, {"name": p.name, "r": r}))
    return [row for *_, row in sorted(rows, key=lambda x: (x[0], x[1]))]


def axes(config: StudyConfig, trials: list[TrialRow]) -> list[dict[str, Any]]:
    """The parallel coordinates' parameter axes, ordered by `order`: key, label, log, cats (a
    categorical one's choices as text), r, and each trial's value (trial order)."""
    by_name = {p.name: p for p in config.h_params}
    rows = sorted(trials, key=lambda t: t.number)
    out = []
    for o in order(config, trials):
        p = by_name[o["name"]]
        cats = [_text(c) for c in p.parameters] if p.distribution == "categorical" else None
        out.append({"key": p.name, "label": f"{p.name} (log10)" if log_scale(p) else p.name, "log": log_scale(p), "cats": cats,
                    "choices": list(p.parameters) if cats else None, "type": p.type, "r": o["r"],
                    "values": [axis_value(p, t.params.get(p.name)) for t in rows]})
    return out


def _text(v) -> str:
    return "true" if v is True else "false" if v is False else str(v)


# -- slices and contour -------------------------------------------------------------------------

def slices(config: StudyConfig, trials: list[TrialRow]) -> list[dict[str, Any]]:
    """For each parameter: the complete trials' (value of the parameter, measure) points."""
    done = sorted(scored(trials), key=lambda t: t.number)
    out = []
    for p in config.h_params:
        pts = [(t.number, t.params.get(p.name), t.value) for t in done if p.name in t.params]
        cats = [_text(c) for c in p.parameters] if p.distribution == "categorical" else None
        out.append({"name": p.name, "log": log_scale(p), "cats": cats,
                    "x": [_text(x) if cats else x for _, x, _ in pts], "y": [y for *_, y in pts], "numbers": [n for n, *_ in pts]})
    return out


def contour(config: StudyConfig, trials: list[TrialRow], x: str, y: str) -> dict[str, Any]:
    """Two parameters against the measure: the complete trials as points, and a surface on a
    CONTOUR_GRID² grid by inverse-distance weighting in axis units (as optuna-dashboard's
    contour interpolates); no surface with fewer than 3 distinct points."""
    by_name = {p.name: p for p in config.h_params}
    for name in (x, y):
        if name not in by_name:
            raise InvalidInput(f"The study has no parameter {name!r}; it has {', '.join(by_name)}.")
    if x == y:
        raise InvalidInput("A contour needs two different parameters.")
    px, py = by_name[x], by_name[y]
    pts = []
    for t in sorted(scored(trials), key=lambda t: t.number):
        ax, ay = axis_value(px, t.params.get(x)), axis_value(py, t.params.get(y))
        if ax is not None and ay is not None:
            pts.append((ax, ay, t.value, t.number))
    out: dict[str, Any] = {"x": _axis_info(px), "y": _axis_info(py), "points": [
        {"x": a, "y": b, "value": v, "number": n} for a, b, v, n in pts], "grid": None}
    if len({(a, b) for a, b, *_ in pts}) < 3:
        return out
    xs, ys = _span([a for a, *_ in pts], px), _span([b for _, b, *_ in pts], py)
    gx = [xs[0] + (xs[1] - xs[0]) * i / (CONTOUR_GRID - 1) for i in range(CONTOUR_GRID)]
    gy = [ys[0] + (ys[1] - ys[0]) * i / (CONTOUR_GRID - 1) for i in range(CONTOUR_GRID)]
    wx, wy = (xs[1] - xs[0]) or 1.0, (ys[1] - ys[0]) or 1.0
    z = []
    for cy in gy:
        row = []
        for cx in gx:
            num = den = 0.0
            for a, b, v, _ in pts:
                d2 = ((a - cx) / wx) ** 2 + ((b - cy) / wy) ** 2
                if d2 < 1e-12:
                    num, den = v, 1.0
                    break
                w = 1.0 / d2
                num, den = num + w * v, den + w
            row.append(num / den)
        z.append(row)
    out["grid"] = {"x": gx, "y": gy, "z": z}
    return out


def _axis_info(p: HParam) -> dict[str, Any]:
    return {"name": p.name, "log": log_scale(p), "cats": [_text(c) for c in p.parameters] if p.distribution == "categorical" else None}


def _span(values: list[float], p: HParam) -> tuple[float, float]:
    if p.distribution == "categorical":
        return 0.0, float(max(1, len(p.parameters) - 1))
    lo, hi = min(values), max(values)
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


# -- lineage (PBT) ------------------------------------------------------------------------------

def lineage(trials: list[TrialRow], now: float) -> dict[str, Any]:
    """The trials as a forest by their `parent` (PBT forks; all roots without PBT): nodes with
    depth and the lane they are drawn in, edges, and the playback's frames (the times at which
    a trial appeared or ended)."""
    rows = sorted(trials, key=lambda t: t.number)
    numbers = {t.number for t in rows}
    parent = {t.number: t.parent if t.parent in numbers and t.parent != t.number else None for t in rows}
    depth: dict[int, int] = {}

    def depth_of(n: int, seen=()) -> int:
        if n in depth:
            return depth[n]
        p = parent[n]
        d = 0 if p is None or p in seen else depth_of(p, (*seen, n)) + 1
        depth[n] = d
        return d

    children: dict[int | None, list[int]] = {}
    for t in rows:
        children.setdefault(parent[t.number], []).append(t.number)
    lane: dict[int, int] = {}

    def place(n: int) -> None:  # depth first: a subtree's lanes are contiguous
        lane[n] = len(lane)
        for c in children.get(n, []):
            if c not in lane:
                place(c)

    for root in children.get(None, []):
        place(root)
    for t in rows:  # a cycle in bad data: still drawn
        if t.number not in lane:
            place(t.number)
    nodes = [{"number": t.number, "parent": parent[t.number], "depth": depth_of(t.number), "lane": lane[t.number],
              "state": t.state, "value": t.value if finite(t.value) else None, "params": t.params,
              "start": t.started if t.started is not None else t.created, "end": t.ended} for t in rows]
    times = sorted({n["start"] for n in nodes} | {n["end"] for n in nodes if n["end"] is not None})
    if len(times) > MAX_LINEAGE_FRAMES:
        step = len(times) / MAX_LINEAGE_FRAMES
        times = [times[int(i * step)] for i in range(MAX_LINEAGE_FRAMES)] + [times[-1]]
    return {"nodes": nodes, "edges": [{"from": parent[t.number], "to": t.number} for t in rows if parent[t.number] is not None],
            "frames": times or [now], "forked": any(parent[t.number] is not None for t in rows)}


# -- importance (Optuna's evaluators) -------------------------------------------------------------

def importance(config: StudyConfig, trials: list[TrialRow], method: str = "fanova", seed: int = 0) -> dict[str, Any]:
    """{method, importances: [{name, importance}] of every h_param, largest first, summing to
    about 1, trials (how many complete ones were used), note}. Optuna's FanovaImportanceEvaluator
    or PedAnovaImportanceEvaluator over an in-memory study of the complete trials; a parameter
    Optuna leaves out (one value only) counts 0. Fewer than 2 complete trials: no importances,
    and a note saying so."""
    if method not in METHODS:
        raise InvalidInput(f"method is one of {', '.join(METHODS)}, not {method!r}.")
    done = scored(trials)
    names = [p.name for p in config.h_params]
    out: dict[str, Any] = {"method": method, "label": METHODS[method], "trials": len(done), "importances": [], "note": ""}
    if len(done) < 2:
        out["note"] = f"Importance needs at least 2 complete trials; the study has {len(done)}."
        return out
    import warnings

    import optuna
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

    from . import space

    study = optuna.create_study(direction=config.direction)  # no sampler is asked: the default is enough
    space.replay(study, config, [(t.params, t.value, t.steps, "complete") for t in done])
    kept = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(kept) < 2:
        out["note"] = "Importance needs at least 2 complete trials of the study's current space."
        return out
    evaluator = FanovaImportanceEvaluator(seed=seed) if method == "fanova" else PedAnovaImportanceEvaluator()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA warns that few trials give equal importances: the note says so
        try:
            got = get_param_importances(study, evaluator=evaluator, normalize=True)
        except (ValueError, RuntimeError) as exc:  # e.g. every parameter has one value only
            out["note"] = f"Optuna could not compute importances: {exc}"
            got = {}
    values = {n: float(got.get(n, 0.0)) for n in names}
    if method == "ped_anova" and len(kept) < 10:
        out["note"] = f"PED-ANOVA compares the best trials with the rest; with {len(kept)} trials its figures are rough."
    out["importances"] = sorted(({"name": n, "importance": v} for n, v in values.items()), key=lambda r: -r["importance"])
    return out


def merged_config(configs: list[tuple[str, dict]]) -> dict:
    """One raw config spanning several studies' spaces, for their trials taken as one set (the
    compare page's "merge"): the parameters they all have, numeric ranges widened to cover each
    study's, categorical choices united; measure and order must agree."""
    studies = [(name, parse_config(raw)) for name, raw in configs]
    if not studies:
        raise InvalidInput("Name at least one study.")
    first_name, first = studies[0]
    for name, c in studies[1:]:
        if (c.measure, c.direction) != (first.measure, first.direction):
            raise InvalidInput(f"{name} is judged by {c.measure} ({c.direction}) and {first_name} by {first.measure} "
                               f"({first.direction}): trials of different measures cannot be merged.")
    common = [p.name for p in first.h_params if all(any(q.name == p.name for q in c.h_params) for _, c in studies)]
    if not common:
        raise InvalidInput("The studies share no parameter to merge by.")
    h_params = {}
    for name in common:
        ps = [next(q for q in c.h_params if q.name == name) for _, c in studies]
        h_params[name] = _merged_param(name, ps)
    return {"h_params": h_params, "measure": first.measure, "order": "descending" if first.direction == "maximize" else "ascending"}


def _merged_param(name: str, ps: list[HParam]) -> dict:
    if any(p.distribution == "categorical" for p in ps):
        choices, seen = [], set()
        kind = ps[0].type
        for p in ps:
            for c in p.parameters if p.distribution == "categorical" else ():
                if repr(c) not in seen:
                    seen.add(repr(c))
                    choices.append(c)
        if not all(p.distribution == "categorical" and p.type == kind for p in ps):
            raise InvalidInput(f"h_params.{name} is categorical in one study and not in another: they cannot be merged.")
        return {"parameters": choices, "distribution": "categorical", "type": kind}
    from .space import _range

    spans = [_range(p) for p in ps]
    log = all(s[2] for s in spans)
    kind = "int" if all(p.type == "int" for p in ps) else "float"
    lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
    if kind == "int":
        lo, hi = math.floor(lo), math.ceil(hi)
    return {"parameters": [lo, hi], "distribution": "log_uniform" if log else "uniform", "type": kind}


# -- "Re-run with this space" -------------------------------------------------------------------

def rerun_config(raw: dict, ranges: dict[str, Any], memo: str = "") -> dict:
    """The study's raw config with each brushed parameter narrowed: {name: [low, high]} for a
    numeric one (in the parameter's own units, clipped to its range; a normal one becomes
    uniform over the brush; an int range narrowed to one whole number becomes that one
    choice), {name: [choice, ...]} for a categorical one (a subset of its choices). Checked with
    parse_config; InvalidInput for an empty brush, an unknown parameter, a range outside the
    parameter's, or no choice left."""
    config = parse_config(raw)
    if not isinstance(ranges, dict) or not ranges:
        raise InvalidInput("Brush at least one parameter's axis: the new study's space is the brushed ranges.")
    by_name = {p.name: p for p in config.h_params}
    unknown = [k for k in ranges if k not in by_name]
    if unknown:
        raise InvalidInput(f"The study has no parameter {unknown[0]!r}; it has {', '.join(by_name)}.")
    new = dict(raw)
    h_params = {k: dict(v) for k, v in raw["h_params"].items()}
    for name, brushed in ranges.items():
        p = by_name[name]
        h_params[name] = _narrowed(p, h_params[name], brushed)
    new["h_params"] = h_params
    if memo:
        new["memo"] = memo
    parse_config(new, "the narrowed config")  # what the new study will be refused for, said now
    return new


def _narrowed(p: HParam, spec: dict, brushed) -> dict:
    if not isinstance(brushed, (list, tuple)) or not brushed:
        raise InvalidInput(f"The brush on {p.name} is empty: give [low, high] or the choices kept.")
    if p.distribution == "categorical":
        kept = [c for c in p.parameters if any(_same_choice(c, b) for b in brushed)]
        if not kept:
            raise InvalidInput(f"None of {brushed!r} is a choice of {p.name} ({', '.join(map(_text, p.parameters))}).")
        return {**spec, "parameters": kept}
    if len(brushed) != 2 or not all(finite(v) for v in brushed):
        raise InvalidInput(f"The brush on {p.name} is [low, high], two numbers, not {brushed!r}.")
    from .space import _range

    low, high, _ = _range(p)
    lo, hi = max(low, float(min(brushed))), min(high, float(max(brushed)))
    if p.type == "int":
        lo, hi = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    if lo > hi:
        raise InvalidInput(f"The brush on {p.name} [{min(brushed):g}, {max(brushed):g}] holds no value of its range "
                           f"[{low:g}, {high:g}]" + (" (no whole number)" if p.type == "int" else "") + ".")
    if lo == hi:
        if p.type == "int":
            return {"parameters": [int(lo)], "distribution": "categorical", "type": "int"}
        raise InvalidInput(f"The brush on {p.name} is a single value ({lo:g}); brush a range.")
    distribution = "log_uniform" if log_scale(p) else "uniform"
    out = {"parameters": [int(lo), int(hi)] if p.type == "int" else [lo, hi], "distribution": distribution, "type": p.type}
    if p.p_range and p.p_range[0] <= lo and p.p_range[1] >= hi:
        out["p_range"] = list(p.p_range)  # PBT may still perturb as far as before
    return out


def _same_choice(choice, brushed) -> bool:
    """A brushed choice, as the page sends it (a number or its text), is this one."""
    if isinstance(choice, bool) or isinstance(brushed, bool):
        return choice is brushed or _text(choice) == str(brushed).lower()
    if isinstance(choice, (int, float)) and finite(brushed):
        return float(choice) == float(brushed)
    return _text(choice) == str(brushed)
