"""What the web dashboard reads: session search, metric keys of many sessions, and downsampled
series that answer in milliseconds however long the run was.

Downsampling reads per-block extremes, not raw points: every chunk of a series
(nsml/store/packed.py) keeps the lowest and highest point of each of its BLOCK-point blocks. A
100,000-point series is ~100 chunk rows; drawing it reads their block extremes (a few hundred
bytes a row, never the packed points), plus the raw points of the chunks at the edges of the
visible range, and min/max-decimates the candidates (packed.minmax). Every point returned is a
real point, and a spike, being its block's maximum, always survives. When the visible range
holds few points (zoomed in) its raw points are decimated instead, exactly.

The extremes are written with the points, in the ingest's transaction: nothing to roll up. The
queries differ between the databases only in shape: PostgreSQL gets each series' chunks as one
aggregated row and the edge chunks by an array join (_chunk_tables, _raw_many say why).
"""

import math
from collections.abc import Iterable, Sequence

import numpy as np
from sqlalchemy import (ARRAY, Float, Integer, LargeBinary, String, and_, bindparam, cast, func, literal_column, or_, select,
                        true, tuple_)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from nsml.core import naming
from nsml.core.downsample import intervals_for
from nsml.core.entities import Session
from nsml.core.errors import InvalidInput, NotFound
from nsml.store import packed

from .engine import binary
from .models import PointChunkRow, SeriesRow, SessionRow
from .sessions import in_scope, to_session

AXES = ("step", "walltime", "relative")
# One chunk of a series as PostgreSQL's aggregated read packs it (int4send, float8send: big-endian).
_CHUNK_META = np.dtype([("seq", ">i4"), ("counted", ">i4"), ("blocks", ">i4"), ("x0", ">f8"), ("x1", ">f8")])
_BLOCK_BYTES = 6 * packed.DTYPE.itemsize  # a block's extremes: lo_step, lo_wall, lo_value, hi_step, hi_wall, hi_value


def _like(q: str) -> str:
    """A LIKE pattern matching q anywhere, with LIKE's own wildcards taken literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def minmax_many(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], budget: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[packed.minmax(x, y, budget) for each pair], the same points exactly (the tests compare
    them), from a dozen numpy passes over all the pairs' points at once instead of a dozen per
    pair. Nothing is sorted: each point's interval is a function of its x, so the lowest and
    highest of each (series, interval) come from ufunc.at, and a series' intervals are already
    in x order; only a series that fits the budget whole is sorted, by packed.minmax."""
    out = [packed.minmax(x, y, budget) if len(x) <= budget or budget < 4 else None for x, y in zip(xs, ys)]
    big = [i for i, o in enumerate(out) if o is None]
    n = intervals_for(budget)
    step = max(1, (1 << 20) // n)  # series at a time: the per-interval arrays stay ~8 MiB
    for b in range(0, len(big), step):
        part = big[b:b + step]
        for i, picked in zip(part, _minmax_big([xs[i] for i in part], [ys[i] for i in part], n)):
            out[i] = picked
    return out


def _minmax_big(xs: list[np.ndarray], ys: list[np.ndarray], n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """minmax_many's work for series longer than their budget, cut into n intervals each."""
    sizes = np.array([len(x) for x in xs], dtype=np.int64)
    g = len(xs)
    group = np.repeat(np.arange(g), sizes)
    x = np.concatenate(xs).astype(np.float64, copy=False)
    y = np.concatenate(ys).astype(np.float64, copy=False)
    begins = np.r_[0, np.cumsum(sizes)[:-1]]
    lo, hi = np.minimum.reduceat(x, begins), np.maximum.reduceat(x, begins)
    with np.errstate(divide="ignore"):
        scale = np.where(hi > lo, n / (hi - lo), 0.0)  # the float operations packed.minmax does
    base = np.arange(g) * n
    key = np.clip(((x - lo[group]) * scale[group]).astype(np.int64), 0, n - 1) + base[group]
    last_key = np.clip(((hi - lo) * scale).astype(np.int64), 0, n - 1) + base
    # Each interval's lowest and highest y, and of equal ones the first in x.
    low, high = np.full(g * n, np.inf), np.full(g * n, -np.inf)
    np.minimum.at(low, key, y)
    np.maximum.at(high, key, y)
    low_x, high_x = np.full(g * n, np.inf), np.full(g * n, np.inf)
    at = y == low[key]
    np.minimum.at(low_x, key[at], x[at])
    at = y == high[key]
    np.minimum.at(high_x, key[at], x[at])
    # The series' first point (lowest x, lowest y of those) and last (highest x, highest y).
    first_y, last_y = np.full(g, np.inf), np.full(g, -np.inf)
    at = x == lo[group]
    np.minimum.at(first_y, group[at], y[at])
    at = x == hi[group]
    np.maximum.at(last_y, group[at], y[at])
    # Per interval holding points, in interval order: [first], low and high in x order, [last].
    used = np.flatnonzero(low <= high)
    owner = used // n
    a_x, a_y, b_x, b_y = low_x[used], low[used], high_x[used], high[used]
    swap = b_x < a_x
    a_x[swap], b_x[swap] = b_x[swap], a_x[swap]
    a_y[swap], b_y[swap] = b_y[swap], a_y[swap]
    is_first, is_last = used == base[owner], used == last_key[owner]
    px = np.column_stack((lo[owner], a_x, b_x, hi[owner])).ravel()
    py = np.column_stack((first_y[owner], a_y, b_y, last_y[owner])).ravel()
    pg = np.repeat(owner, 4)
    valid = np.column_stack((is_first, np.ones_like(is_first), np.ones_like(is_first), is_last)).ravel()
    px, py, pg = px[valid], py[valid], pg[valid]
    # A point picked twice (equal x and y: in one interval) is kept once, as packed.minmax's set has it.
    once = np.ones(len(px), dtype=bool)
    once[1:] = (px[1:] != px[:-1]) | (py[1:] != py[:-1]) | (pg[1:] != pg[:-1])
    px, py, pg = px[once], py[once], pg[once]
    cut = np.cumsum(np.bincount(pg, minlength=g))[:-1]
    return list(zip(np.split(px, cut), np.split(py, cut)))


class ViewsMixin:
    # -- session search ---------------------------------------------------------------------
    def search_sessions(
        self, q: str = "", dataset: str | None = None, statuses: set[str] | None = None,
        owner: str | None = None, offset: int = 0, limit: int = 50, scope=None, where_tree=None,
    ) -> tuple[int, list[Session]]:
        """(how many match, one page of them newest first). `q` matches, case-insensitively,
        part of the name owner/dataset/N, the memo or the arguments. Sessions `rm -s` took out of
        listings are left out, and those `scope` (nsml.core.policy.SessionScope) may not read;
        `where_tree` (nsml.core.query.parse's tree) narrows them further."""
        where = [SessionRow.removed.is_(None), *in_scope(scope)]
        if where_tree is not None:
            where.append(self._query_condition(where_tree))
        if q:
            pattern = _like(q)
            name = SessionRow.owner + "/" + SessionRow.dataset + "/" + cast(SessionRow.number, String)
            where.append(or_(*(col.ilike(pattern, escape="\\") for col in (name, SessionRow.memo, SessionRow.args))))
        if dataset:
            where.append(SessionRow.dataset == dataset)
        if statuses:
            where.append(SessionRow.status.in_([str(getattr(s, "value", s)) for s in statuses]))
        if owner:
            where.append(SessionRow.owner == owner)
        page = (select(SessionRow).where(*where)
                .order_by(SessionRow.created.desc(), SessionRow.id.desc())
                .offset(max(0, offset)).limit(max(0, limit)))
        with self._read() as orm:
            total = orm.scalar(select(func.count()).select_from(SessionRow).where(*where))
            return total, [to_session(r) for r in orm.scalars(page)]

    def sessions_named(self, names: Iterable[str]) -> dict[str, Session]:
        """{name: session} of those of `names` that are sessions (others, and names that are not
        session names, left out): one query for an overlaid graph's sessions, where get_session
        a name costs a query each (and, for a missing one, a listing of every session)."""
        wanted: dict[tuple[str, str], dict[int, str]] = {}
        for name in names:
            try:
                owner, dataset, number = naming.parse_session_name(name)
            except (InvalidInput, NotFound):
                continue
            wanted.setdefault((owner, dataset), {})[number] = name
        out: dict[str, Session] = {}
        if not wanted:
            return out
        clauses = [and_(SessionRow.owner == owner, SessionRow.dataset == dataset, SessionRow.number.in_(sorted(numbers)))
                   for (owner, dataset), numbers in wanted.items()]
        with self._read() as orm:
            for row in orm.scalars(select(SessionRow).where(or_(*clauses))):
                name = wanted.get((row.owner, row.dataset), {}).get(row.number)
                if name is not None:
                    out[name] = to_session(row)
        return out

    # -- metric keys ------------------------------------------------------------------------
    def keys_of_sessions(self, session_ids: Iterable[int]) -> dict[int, list[str]]:
        """Metric keys of several sessions: {session id: sorted keys}; every id asked for is
        there (with [] for one that reported nothing, or does not exist)."""
        ids = list(session_ids)
        out: dict[int, list[str]] = {i: [] for i in ids}
        with self._read() as orm:
            for i in range(0, len(ids), 500):
                rows = orm.execute(select(SeriesRow.session_id, SeriesRow.key)
                                   .where(SeriesRow.session_id.in_(ids[i:i + 500])).order_by(SeriesRow.key))
                for session_id, key in rows:
                    out[session_id].append(key)
        return out

    # -- downsampled series -----------------------------------------------------------------
    def downsampled_series(
        self, session_id: int, key: str, x: str = "step", xmin: float | None = None,
        xmax: float | None = None, buckets: int = 1000,
    ) -> dict:
        """At most `buckets` points of a series over [xmin, xmax], in x order, keeping each
        interval's min and max (nsml.core.downsample). x is step, walltime, or relative
        (seconds since the session's first point). Values that are not finite numbers are left
        out. `count` is the number of points in range (chunks cut by the range's edges are
        counted exactly; none other is cut); `exact` is True when nothing was left out."""
        out = self.downsampled_many([(session_id, key)], x, xmin, xmax, buckets)[0]
        return {**out, "x": out["x"].tolist(), "y": out["y"].tolist()}

    def downsampled_many(
        self, series: Sequence[tuple[int, str]], x: str = "step", xmin: float | None = None,
        xmax: float | None = None, buckets: int = 1000,
    ) -> list[dict]:
        """downsampled_series of several (session id, key) pairs, one answer each in their
        order, with x and y as float64 arrays: an overlaid chart of 150 series costs three
        queries, not 150 times three, and one numpy pass over all their candidates."""
        if x not in AXES:
            raise ValueError(f"x must be one of {', '.join(AXES)}, not {x!r}")
        buckets = max(1, int(buckets))
        by_step = x == "step"
        wanted = list(series)
        with self.engine.connect() as conn:
            ids, offsets = self._series_ids(conn, {s for s, _ in wanted}, x == "relative")
            # Each series' [lo, hi] in stored x; the relative axis shifts it by its session's start.
            plans = []  # (series id, lo, hi, offset) per pair; series id None: no such series
            for session_id, key in wanted:
                offset = offsets.get(session_id, 0.0)
                lo = -math.inf if xmin is None else xmin + offset
                hi = math.inf if xmax is None else xmax + offset
                plans.append((ids.get((session_id, key)), lo, hi, offset))
            # One query for the chunks of every series in range: their counts, x ranges and
            # block extremes (a few hundred bytes a chunk, never the packed points).
            tables = self._chunk_tables(conn, {p[0]: p[1:3] for p in plans if p[0] is not None}, by_step)
            # Which chunks each series needs raw: all of them when few points are in range,
            # else those blocks cannot stand in for (cut by the range's edges, or holding its
            # first or last point, so the line ends where it does).
            work = []  # (plan, table, overlapping chunks, edge mask or None when all raw, total)
            need_raw: list[tuple[int, int]] = []
            for plan in plans:
                series_id, lo, hi, _ = plan
                table = tables.get(series_id)
                if table is None:
                    work.append((plan, None, None, None, 0))
                    continue
                seq, counted_, c0, c1 = table[:4]
                overlapping = np.flatnonzero((c1 >= lo) & (c0 <= hi))  # in seq order
                total = int(counted_[overlapping].sum())
                if not total:
                    work.append((plan, None, None, None, 0))
                    continue
                if total <= 2 * buckets or total < intervals_for(buckets) * packed.BLOCK:
                    edge = None
                    edges = seq[overlapping]
                else:
                    o0, o1 = c0[overlapping], c1[overlapping]
                    edge = (o0 < lo) | (o1 > hi)
                    edge[np.argmin(o0)] = True  # the first point's chunk: lowest x, of those the lowest seq
                    edge[len(o1) - 1 - np.argmax(o1[::-1])] = True  # the last's: highest x, highest seq
                    edges = seq[overlapping[edge]]
                work.append((plan, table, overlapping, edge, total))
                need_raw += [(series_id, int(q)) for q in edges]
            raw = self._raw_many(conn, need_raw, by_step)
        # Candidates of every series, then one min/max decimation over all of them.
        cand_x, cand_y, meta = [], [], []
        for (series_id, lo, hi, offset), table, overlapping, edge, total in work:
            if not total:
                cand_x.append(np.empty(0))
                cand_y.append(np.empty(0))
                meta.append((offset, 0, True))
                continue
            seq, counted_, _, _, first_block, extremes = table
            xs, ys = [], []
            for q in (seq[overlapping] if edge is None else seq[overlapping[edge]]).tolist():
                px, py = raw[series_id, q]
                keep = (px >= lo) & (px <= hi) & ~np.isnan(py)  # NaN x (no step) compares false: left out
                xs.append(px[keep])
                ys.append(py[keep])
            n_raw = sum(len(v) for v in xs)
            if edge is None:  # all raw: exact when it fits
                meta.append((offset, n_raw, None))
            else:
                inner = overlapping[~edge]
                if not len(inner):
                    rows = extremes[:0]
                elif inner[-1] - inner[0] + 1 == len(inner):  # one run of chunks (the usual: all but the ends)
                    rows = extremes[first_block[inner[0]]:first_block[inner[-1] + 1]]
                else:
                    chosen = np.zeros(len(seq), dtype=bool)
                    chosen[inner] = True
                    rows = extremes[np.repeat(chosen, np.diff(first_block))]
                bx, by = packed.block_extremes(np.ascontiguousarray(rows), by_step)
                xs.append(bx)
                ys.append(by)
                meta.append((offset, total - int(counted_[overlapping[edge]].sum()) + n_raw, False))
            cand_x.append(np.concatenate(xs) if xs else np.empty(0))
            cand_y.append(np.concatenate(ys) if ys else np.empty(0))
        picked = minmax_many(cand_x, cand_y, buckets)
        out = []
        for (kx, ky), (offset, count, exact), cx in zip(picked, meta, cand_x):
            out.append({"x": kx - offset if offset else kx, "y": ky, "count": int(count),
                        "exact": len(kx) == len(cx) if exact is None else exact})
        return out

    # Which read _chunk_tables makes: None, by database (PostgreSQL aggregated, else a row per
    # chunk); the tests set it to compare the two on PostgreSQL.
    _aggregate_chunks: bool | None = None

    def _chunk_tables(self, conn, ranges: dict[int, tuple[float, float]], by_step: bool) -> dict[int, tuple]:
        """{series id: (seq, counted, x0, x1, first_block, extremes)} of the chunks of each
        series that count a point (numeric, with a step on the step axis) and reach into its
        [lo, hi] (`ranges`, in stored x): numpy arrays in seq order, x0 and x1 each chunk's x
        range (step or walltime), and its blocks' extremes, rows first_block[i]:first_block[i + 1]
        of `extremes` (blocks x 6 float64, packed.block_extremes' table). A series without such
        chunks is left out.

        SQLite: a row per chunk (~14,700 for 150 series of 100,000 points: cheap in process),
        series sharing a range (all of them but on the relative axis) in one clause. PostgreSQL:
        a row per series, as there every row costs the client ~4 µs to receive and convert: its
        chunks' small columns packed into one bytea (int4send, float8send: big-endian) and their
        blocks concatenated, both in seq order (string_agg), read by numpy in one pass. Each
        series is aggregated in a LATERAL subquery of its own, from the primary key's index:
        grouping all of them at once sorts every chunk row, blocks and all (~6 MB, spilled to
        disk past work_mem; ~3x as slow at 150 series)."""
        c = PointChunkRow.__table__.c
        x0, x1 = (c.step0, c.step1) if by_step else (c.wall0, c.wall1)
        counted = c.nnum_step if by_step else c.nnum
        aggregate = self._aggregate_chunks
        if aggregate is None:
            aggregate = conn.dialect.name == "postgresql"
        parts = []  # (series ids, seq, counted, x0, x1, blocks a chunk, blocks' bytes) per query
        if aggregate:
            nan = literal_column("'NaN'::float8")  # a NULL would drop its record from string_agg
            record = (func.int4send(c.seq).op("||")(func.int4send(counted))
                      .op("||")(func.int4send(func.octet_length(c.blocks)))
                      .op("||")(func.float8send(func.coalesce(x0, nan))).op("||")(func.float8send(func.coalesce(x1, nan))))
            empty = literal_column("''::bytea")
            order = sorted(ranges)
            for i in range(0, len(order), 1000):
                part = order[i:i + 1000]
                wanted = func.unnest(bindparam("ids", part, type_=ARRAY(Integer)),
                                     bindparam("los", [ranges[s][0] for s in part], type_=ARRAY(Float)),
                                     bindparam("his", [ranges[s][1] for s in part], type_=ARRAY(Float))
                                     ).table_valued("id", "lo", "hi").render_derived(name="u")
                chunks = (select(func.string_agg(record, aggregate_order_by(empty, c.seq), type_=LargeBinary).label("meta"),
                                 func.string_agg(c.blocks, aggregate_order_by(empty, c.seq), type_=LargeBinary).label("blocks"))
                          .where(c.series_id == wanted.c.id, counted > 0, x1 >= wanted.c.lo, x0 <= wanted.c.hi)
                          .lateral("a"))
                rows = [r for r in conn.execute(binary(select(wanted.c.id, chunks.c.meta, chunks.c.blocks)
                                                       .select_from(wanted).join(chunks, true()))) if r[1] is not None]
                if not rows:
                    continue
                ids, metas, blocks = zip(*rows)
                table = np.frombuffer(b"".join(metas), dtype=_CHUNK_META)
                sizes = [len(m) // _CHUNK_META.itemsize for m in metas]
                parts.append((np.repeat(np.array(ids, dtype=np.int64), sizes), table["seq"], table["counted"],
                              table["x0"], table["x1"], table["blocks"] // _BLOCK_BYTES, b"".join(blocks)))
        else:
            groups: dict[tuple[float, float], list[int]] = {}
            for series_id, bounds in ranges.items():
                groups.setdefault(bounds, []).append(series_id)
            clauses = [and_(c.series_id.in_(sorted(group)),
                            *([x1 >= lo] if lo > -math.inf else []), *([x0 <= hi] if hi < math.inf else []))
                       for (lo, hi), group in groups.items()]
            for i in range(0, len(clauses), 100):
                rows = conn.execute(binary(select(c.series_id, c.seq, counted, x0, x1, c.blocks)
                                           .where(counted > 0, or_(*clauses[i:i + 100])).order_by(c.series_id, c.seq))).all()
                if not rows:
                    continue
                ids, seqs, counts, lows, highs, blocks = zip(*rows)
                parts.append((np.array(ids, dtype=np.int64), np.array(seqs), np.array(counts),
                              np.array(lows, dtype=np.float64), np.array(highs, dtype=np.float64),
                              np.fromiter(map(len, blocks), np.int64, len(blocks)) // _BLOCK_BYTES, b"".join(blocks)))
        out: dict[int, tuple] = {}
        for ids, seqs, counts, lows, highs, nblocks, blob in parts:
            seqs, counts = seqs.astype(np.int64), counts.astype(np.int64)
            lows, highs = lows.astype(np.float64), highs.astype(np.float64)  # native byte order
            extremes = np.frombuffer(blob, dtype=packed.DTYPE).reshape(-1, 6)
            first_block = np.r_[0, np.cumsum(nblocks)]
            cuts = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1, len(ids)]
            for b, e in zip(cuts[:-1].tolist(), cuts[1:].tolist()):
                out[int(ids[b])] = (seqs[b:e], counts[b:e], lows[b:e], highs[b:e], first_block[b:e + 1] - first_block[b],
                                    extremes[first_block[b]:first_block[e]])
        return out

    def _series_ids(self, conn, session_ids: set[int], relative: bool) -> tuple[dict, dict[int, float]]:
        """{(session id, key): series id} of these sessions and, for the relative axis, each
        one's start: the walltime of its first numeric point (over all its series), else its
        start time."""
        ids: dict[tuple[int, str], int] = {}
        starts: dict[int, float] = {}
        order = sorted(session_ids)
        for i in range(0, len(order), 500):
            rows = conn.execute(select(SeriesRow.id, SeriesRow.session_id, SeriesRow.key, SeriesRow.first_wall)
                                .where(SeriesRow.session_id.in_(order[i:i + 500])))
            for series_id, session_id, key, first_wall in rows:
                ids[session_id, key] = series_id
                if first_wall is not None and (session_id not in starts or first_wall < starts[session_id]):
                    starts[session_id] = first_wall
        if not relative:
            return ids, {}
        unstarted = [s for s in order if s not in starts]
        for i in range(0, len(unstarted), 500):
            for session_id, started in conn.execute(select(SessionRow.id, SessionRow.started)
                                                    .where(SessionRow.id.in_(unstarted[i:i + 500]))):
                starts[session_id] = started or 0.0
        return ids, starts

    @staticmethod
    def _raw_many(conn, wanted: list[tuple[int, int]], by_step: bool) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
        """{(series id, seq): (x, y)} of these chunks' points, all of them (x: step or walltime)."""
        c = PointChunkRow.__table__.c
        columns = (c.series_id, c.seq, c.n, c.steps if by_step else c.walls, c.vals)
        out = {}
        if conn.dialect.name == "postgresql":
            # The pairs as two arrays, joined to the primary key: two parameters, where an IN of
            # 300 pairs is 600 that psycopg converts, query and parameters, ~15 ms.
            unique = sorted(set(wanted))  # a series asked twice needs its chunks once
            for i in range(0, len(unique), 5000):
                part = unique[i:i + 5000]
                pairs = func.unnest(bindparam("sids", [s for s, _ in part], type_=ARRAY(Integer)),
                                    bindparam("seqs", [q for _, q in part], type_=ARRAY(Integer))
                                    ).table_valued("sid", "seq").render_derived(name="w")
                rows = conn.execute(binary(select(*columns).select_from(pairs).join(
                    PointChunkRow.__table__, and_(c.series_id == pairs.c.sid, c.seq == pairs.c.seq))))
                for series_id, seq, n, xb, vb in rows:
                    out[series_id, seq] = packed.unpack(xb, n), packed.unpack(vb, n)
            return out
        for i in range(0, len(wanted), 500):
            part = wanted[i:i + 500]
            # series_id IN and seq IN as well, which SQLite looks up in the primary key: it scans
            # the whole table for a row-value IN alone.
            rows = conn.execute(select(*columns).where(c.series_id.in_(sorted({s for s, _ in part})),
                                                      c.seq.in_(sorted({q for _, q in part})),
                                                      tuple_(c.series_id, c.seq).in_(part)))
            for series_id, seq, n, xb, vb in rows:
                out[series_id, seq] = packed.unpack(xb, n), packed.unpack(vb, n)
        return out
