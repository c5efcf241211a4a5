"""Min/max decimation: extremes survive, x order holds, the budget is respected."""

import math
import random

from nsml.core.downsample import finite_points, intervals_for, minmax_downsample


def test_a_single_spike_among_100k_points_survives():
    points = [(float(i), math.sin(i / 500)) for i in range(100_000)]
    points[61_234] = (61_234.0, 1000.0)
    points[7_777] = (7_777.0, -1000.0)
    kept = minmax_downsample(points, 1000)
    assert (61_234.0, 1000.0) in kept and (7_777.0, -1000.0) in kept
    assert len(kept) <= 1000
    assert [x for x, _ in kept] == sorted(x for x, _ in kept)
    assert kept[0] == points[0] and kept[-1] == points[-1]


def test_every_interval_keeps_its_min_and_max():
    rng = random.Random(7)
    points = [(float(i), rng.uniform(-1, 1)) for i in range(20_000)]
    budget = 202
    kept = set(minmax_downsample(points, budget))
    n = intervals_for(budget)
    width = (points[-1][0] - points[0][0]) / n
    for b in range(n):
        inside = [p for p in points if min(n - 1, int(p[0] / width)) == b]
        assert min(inside, key=lambda p: p[1]) in kept
        assert max(inside, key=lambda p: p[1]) in kept


def test_points_that_fit_are_all_returned_sorted():
    points = [(3.0, 1.0), (1.0, 2.0), (2.0, 0.5)]
    assert minmax_downsample(points, 10) == [(1.0, 2.0), (2.0, 0.5), (3.0, 1.0)]


def test_tiny_budgets_and_flat_series():
    points = [(float(i), 5.0) for i in range(1000)]
    assert len(minmax_downsample(points, 1)) == 1
    assert len(minmax_downsample(points, 3)) <= 3
    flat = minmax_downsample(points, 100)
    assert 0 < len(flat) <= 100 and flat[0] == (0.0, 5.0) and flat[-1] == (999.0, 5.0)
    same_x = [(1.0, float(v)) for v in range(50)]  # every point at one x
    assert minmax_downsample(same_x, 10) == [(1.0, 0.0), (1.0, 49.0)]


def test_finite_points_drops_what_is_not_a_number():
    raw = [(1, 2), (2.0, float("nan")), (3.0, float("inf")), (4.0, "x"), (5.0, True), (None, 1.0), (6.5, -0.25)]
    assert finite_points(raw) == [(1.0, 2.0), (6.5, -0.25)]
