"""Metric series as packed chunks: the storage layout of points (docs/internals.md, "Metrics").

A series' points are kept, in the order they were reported, in chunks of CHUNK points. A chunk
is one database row: its points as three little-endian float64 columns (steps, walltimes,
values; a NaN step is "no step", a NaN value "not a number": its JSON is in `extra`), and what
reads need without unpacking them: counts, x ranges, the extremes, and the extremes of each
BLOCK-point block (`blocks`, six float64 a block) for downsampled charts. Reading 100,000
points is ~100 rows and three numpy.frombuffer calls a row, never an object per point.

Pure functions of numpy arrays and plain values: no SQL here (nsml/store/sql/metrics.py and
views.py store and read the rows), so the tests and the migration from the old one-row-per-
point table use the same code.
"""

import json
import sys

import numpy as np

CHUNK = 1024  # points a chunk: a 100,000-point series is ~100 rows, a tail rewrite ≤ 24 KiB
BLOCK = 128  # points a block of extremes: a chart of ~250 intervals over 100,000 points reads ~800
DTYPE = np.dtype("<f8")
NAN = float("nan")
_BLOCK_FIELDS = 6  # lo_step, lo_wall, lo_value, hi_step, hi_wall, hi_value
_SWAP = sys.byteorder != "little"


def pack(column: np.ndarray) -> bytes:
    return column.astype(DTYPE, copy=False).tobytes()


def unpack(blob: bytes, n: int | None = None) -> np.ndarray:
    """A float64 column of a chunk (its first n values: a snapshot of a tail that grew since)."""
    out = np.frombuffer(blob, dtype=DTYPE)
    return out if n is None else out[:n]


def as_column(values: list) -> np.ndarray:
    """A float64 column of Python floats and Nones (None as NaN)."""
    try:
        return np.array(values, dtype=np.float64)
    except TypeError:  # a None among them: numpy's float conversion refuses it
        return np.array([NAN if v is None else v for v in values], dtype=np.float64)


def chunk_row(series_id: int, seq: int, steps: np.ndarray, walls: np.ndarray, values: np.ndarray,
              extra: dict[int, str]) -> dict:
    """The columns of a point_chunks row for these points (equal-length float64 arrays; extra:
    position -> JSON text of each value that is not a number, whose `values` entry is NaN)."""
    n = len(steps)
    blocks, lows, highs = _blocks(values)
    numeric = ~np.isnan(values)
    stepped = ~np.isnan(steps)
    nnum = int(numeric.sum())
    row = dict(series_id=series_id, seq=seq, n=n, nnum=nnum, nnum_step=int((numeric & stepped).sum()),
               nulls=int(n - stepped.sum()), step0=None, step1=None, wall0=float(walls.min()), wall1=float(walls.max()),
               lo_value=None, lo_step=None, lo_wall=None, hi_value=None, hi_step=None, hi_wall=None,
               blocks=_block_table(steps, walls, values, blocks, lows, highs), steps=pack(steps), walls=pack(walls),
               vals=pack(values), extra=json.dumps({str(i): v for i, v in extra.items()}) if extra else None)
    if nnum < n or not stepped.all():
        if stepped.any():
            row["step0"], row["step1"] = float(np.nanmin(steps)), float(np.nanmax(steps))
    else:
        row["step0"], row["step1"] = float(steps.min()), float(steps.max())
    if nnum:
        ok = blocks  # blocks with a number; the chunk's extremes are among theirs (first of equals)
        lo = int(lows[ok][np.argmin(values[lows[ok]])])
        hi = int(highs[ok][np.argmax(values[highs[ok]])])
        row.update(lo_value=float(values[lo]), lo_step=none_if_nan(steps[lo]), lo_wall=float(walls[lo]),
                   hi_value=float(values[hi]), hi_step=none_if_nan(steps[hi]), hi_wall=float(walls[hi]))
    return row


def none_if_nan(x) -> float | None:
    """A float column's entry as a value: None for NaN."""
    return None if x != x else float(x)


def _blocks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per BLOCK points: whether the block has a number, and the positions of its first lowest
    and first highest number (0 for a block without one). One numpy pass over a padded
    (blocks x BLOCK) view, no Python loop over blocks."""
    count = -(-len(values) // BLOCK)
    grid = np.full(count * BLOCK, np.nan)
    grid[:len(values)] = values
    grid = grid.reshape(count, BLOCK)
    missing = np.isnan(grid)
    has = ~missing.all(axis=1)
    base = np.arange(count) * BLOCK
    lows = base + np.argmin(np.where(missing, np.inf, grid), axis=1)
    highs = base + np.argmax(np.where(missing, -np.inf, grid), axis=1)
    return has, lows, highs


def _block_table(steps, walls, values, has, lows, highs) -> bytes:
    """(lo_step, lo_wall, lo_value, hi_step, hi_wall, hi_value) per block, NaN for a block
    without a number; packed as float64."""
    table = np.column_stack((steps[lows], walls[lows], values[lows], steps[highs], walls[highs], values[highs]))
    table[~has] = np.nan
    return table.astype(DTYPE, copy=False).tobytes()


def block_extremes(blob: bytes, by_step: bool) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of the lowest and highest point of each block of a chunk (x: step or walltime),
    leaving out blocks without numbers and, on the step axis, extremes without a step."""
    table = np.frombuffer(blob, dtype=DTYPE).reshape(-1, _BLOCK_FIELDS)
    column = 0 if by_step else 1
    x = np.concatenate((table[:, column], table[:, column + 3]))
    y = np.concatenate((table[:, 2], table[:, 5]))
    keep = ~(np.isnan(x) | np.isnan(y))
    return x[keep], y[keep]


def extra_values(extra: str | None) -> dict[int, object]:
    """The non-numeric values of a chunk, by position."""
    return {i: json.loads(v) for i, v in extra_values_text(extra).items()}


def extra_values_text(extra: str | None) -> dict[int, str]:
    """The same as JSON texts, as chunk_row takes them."""
    return {int(i): v for i, v in json.loads(extra).items()} if extra else {}


def minmax(x: np.ndarray, y: np.ndarray, budget: int, lo: float | None = None,
           hi: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """nsml.core.downsample.minmax_downsample on arrays (finite x and y): at most `budget` points
    in x order, each of intervals_for(budget) equal x intervals keeping its lowest and highest
    point (ties: the earliest in x), plus the first and last point. The same points, exactly
    (the tests compare the two); this one runs in C over the candidates."""
    order = np.lexsort((y, x))
    x, y = x[order], y[order]
    if len(x) <= budget:
        return x, y
    if budget < 4:
        picks = np.unique([int(np.argmin(y)), int(np.argmax(y))])
        return x[picks][:budget], y[picks][:budget]
    lo = float(x[0]) if lo is None else lo
    hi = float(x[-1]) if hi is None else hi
    n = max(1, (budget - 2) // 2)
    scale = n / (hi - lo) if hi > lo else 0.0
    bucket = np.clip(((x - lo) * scale).astype(np.int64), 0, n - 1)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    # Within each bucket (a run of equal `bucket`, x-sorted) the lowest and highest y, first of equals.
    low = np.minimum.reduceat(y, starts)
    high = np.maximum.reduceat(y, starts)
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(x)]))
    index = np.arange(len(x))
    big = len(x)
    first_low = np.minimum.reduceat(np.where(y == low[group], index, big), starts)
    first_high = np.minimum.reduceat(np.where(y == high[group], index, big), starts)
    picks = np.unique(np.concatenate(([0, len(x) - 1], first_low, first_high)))
    x, y = x[picks], y[picks]
    same = np.r_[False, (x[1:] == x[:-1]) & (y[1:] == y[:-1])]  # a point picked twice, as a set has it once
    return x[~same], y[~same]
