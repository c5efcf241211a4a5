"""Downsampling a series for a chart without losing its extremes.

A chart a thousand pixels wide cannot show 100,000 points, but it must still show the one spike
among them. So the x range is cut into equal intervals and each keeps its lowest and highest
point, in x order (min/max decimation); the first and last points of the range are always kept
so the line starts and ends where the data does. Nothing is sampled at random.

Pure functions of plain lists, no numpy: the server uses them on whatever it read (raw points,
or the per-block extremes the SQL store keeps), and the tests use them as the reference.
"""

import math
from collections.abc import Iterable


def finite_points(points: Iterable[tuple]) -> list[tuple[float, float]]:
    """(x, y) pairs whose x and y are real, finite numbers (booleans, strings, NaN, inf dropped)."""
    out = []
    append = out.append
    for x, y in points:
        if type(x) is float and type(y) is float:  # the usual case (REAL columns), inlined
            if x - x == 0.0 and y - y == 0.0:  # finite: NaN and inf give NaN
                append((x, y))
        elif _is_number(x) and _is_number(y):
            append((float(x), float(y)))
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def intervals_for(budget: int) -> int:
    """How many x intervals fit a budget of `budget` points: two per interval (its min and max),
    plus the first and last point of the range."""
    return max(1, (budget - 2) // 2)


def minmax_downsample(points: list[tuple[float, float]], budget: int,
                      lo: float | None = None, hi: float | None = None) -> list[tuple[float, float]]:
    """At most `budget` (>= 1) of `points` (finite (x, y) pairs, any order), in x order.

    The range [lo, hi] (default: the points' own) is cut into intervals_for(budget) equal
    intervals; each keeps its min and its max point (ties: the earliest in x). When the points
    already fit the budget they are all returned.
    """
    points = sorted(points)
    if len(points) <= budget:
        return points
    if budget < 4:  # no room for intervals: the extremes of the whole range
        return _pick(points, [_argmin(points), _argmax(points)])[:budget]
    lo = points[0][0] if lo is None else lo
    hi = points[-1][0] if hi is None else hi
    n = intervals_for(budget)
    scale = n / (hi - lo) if hi > lo else 0.0
    keep = [points[0], points[-1]]
    current = -1
    low = high = points[0]
    low_y = high_y = low[1]
    for p in points:  # one pass in x order; the hot loop keeps to locals
        b = int((p[0] - lo) * scale)
        if b >= n:
            b = n - 1
        elif b < 0:
            b = 0
        if b != current:
            if current >= 0:
                keep.append(low)
                keep.append(high)
            current, low, high, low_y, high_y = b, p, p, p[1], p[1]
        else:
            y = p[1]
            if y < low_y:
                low, low_y = p, y
            elif y > high_y:
                high, high_y = p, y
    keep.append(low)
    keep.append(high)
    return sorted(set(keep))


def _pick(points, indexes) -> list[tuple[float, float]]:
    return [points[i] for i in sorted(set(indexes))]


def _argmin(points) -> int:
    return min(range(len(points)), key=lambda i: points[i][1])


def _argmax(points) -> int:
    return max(range(len(points)), key=lambda i: points[i][1])
