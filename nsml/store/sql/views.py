"""What the web dashboard reads: session search, metric keys of many sessions, and downsampled
series that answer in milliseconds however long the run was.

Downsampling reads per-block extremes, not raw points: every chunk of a series
(nsml/store/packed.py) keeps the lowest and highest point of each of its BLOCK-point blocks. A
100,000-point series is ~100 chunk rows; drawing it reads their block extremes (a few hundred
bytes a row, never the packed points), plus the raw points of the chunks at the edges of the
visible range, and min/max-decimates the candidates (packed.minmax). Every point returned is a
real point, and a spike, being its block's maximum, always survives. When the visible range
holds few points (zoomed in) its raw points are decimated instead, exactly.

The extremes are written with the points, in the ingest's transaction: nothing to roll up, and
nothing here is specific to one database.
"""

from collections.abc import Iterable

import numpy as np
from sqlalchemy import String, cast, func, or_, select

from nsml.core.downsample import intervals_for
from nsml.core.entities import Session
from nsml.store import packed

from .models import PointChunkRow, SeriesRow, SessionRow
from .sessions import in_scope, to_session

AXES = ("step", "walltime", "relative")


def _like(q: str) -> str:
    """A LIKE pattern matching q anywhere, with LIKE's own wildcards taken literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"



class ViewsMixin:
    # -- session search ---------------------------------------------------------------------
    def search_sessions(
        self, q: str = "", dataset: str | None = None, statuses: set[str] | None = None,
        owner: str | None = None, offset: int = 0, limit: int = 50, scope=None,
    ) -> tuple[int, list[Session]]:
        """(how many match, one page of them newest first). `q` matches, case-insensitively,
        part of the name owner/dataset/N, the memo or the arguments. Sessions `rm -s` took out of
        listings are left out, and those `scope` (nsml.core.policy.SessionScope) may not read."""
        where = [SessionRow.removed.is_(None), *in_scope(scope)]
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
        if x not in AXES:
            raise ValueError(f"x must be one of {', '.join(AXES)}, not {x!r}")
        buckets = max(1, int(buckets))
        empty = {"x": [], "y": [], "count": 0, "exact": True}
        by_step = x == "step"
        c = PointChunkRow.__table__.c
        x0, x1 = (c.step0, c.step1) if by_step else (c.wall0, c.wall1)
        counted = c.nnum_step if by_step else c.nnum
        with self.engine.connect() as conn:
            series_id = conn.scalar(select(SeriesRow.id).where(SeriesRow.session_id == session_id, SeriesRow.key == key))
            if series_id is None:
                return empty
            offset = self._session_start(conn, session_id) if x == "relative" else 0.0
            lo = -float("inf") if xmin is None else xmin + offset
            hi = float("inf") if xmax is None else xmax + offset
            overlapping = conn.execute(
                select(c.seq, counted, x0, x1).where(c.series_id == series_id, counted > 0, x1 >= lo, x0 <= hi)
                .order_by(c.seq)).all()
            total = sum(r[1] for r in overlapping)
            if not total:
                return empty
            if total <= 2 * buckets or total < intervals_for(buckets) * packed.BLOCK:
                # Few points in range (or blocks too coarse for the intervals): decimate the raw ones.
                xs, ys = self._raw(conn, series_id, [r[0] for r in overlapping], by_step, lo, hi)
                kx, ky = packed.minmax(xs, ys, buckets)
                return self._answer(kx, ky, offset, len(xs), len(kx) == len(xs))
            # Raw points where blocks cannot stand in: chunks cut by the range's edges, and the
            # chunks holding the range's first and last points (so the line ends where it does).
            first = min(overlapping, key=lambda r: (r[2], r[0]))
            last = max(overlapping, key=lambda r: (r[3], r[0]))
            edges = [r[0] for r in overlapping if r[2] < lo or r[3] > hi or r is first or r is last]
            xs, ys = self._raw(conn, series_id, edges, by_step, lo, hi)
            skip = set(edges)
            inner = [r[0] for r in overlapping if r[0] not in skip]
            # One range query for the inner chunks' block extremes (a long IN list costs more to
            # build than to run), and one numpy pass over all of them.
            rows = conn.execute(select(c.seq, c.blocks).where(
                c.series_id == series_id, c.seq.between(inner[0], inner[-1]))) if inner else []
            wanted = set(inner)
            bx, by = packed.block_extremes(b"".join(blob for seq, blob in rows if seq in wanted), by_step)
            count = total - sum(r[1] for r in overlapping if r[0] in skip) + len(xs)
        kx, ky = packed.minmax(np.concatenate((xs, bx)), np.concatenate((ys, by)), buckets)
        return self._answer(kx, ky, offset, count, False)

    @staticmethod
    def _answer(x: np.ndarray, y: np.ndarray, offset: float, count: int, exact: bool) -> dict:
        return {"x": (x - offset).tolist(), "y": y.tolist(), "count": int(count), "exact": exact}

    @staticmethod
    def _raw(conn, series_id: int, seqs: list[int], by_step: bool, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
        """The numeric points of these chunks with x (step or walltime) in [lo, hi]."""
        c = PointChunkRow.__table__.c
        xs, ys = [np.empty(0)], [np.empty(0)]
        for i in range(0, len(seqs), 500):
            rows = conn.execute(select(c.n, c.steps if by_step else c.walls, c.vals)
                                .where(c.series_id == series_id, c.seq.in_(seqs[i:i + 500])))
            for n, xb, vb in rows:
                x, y = packed.unpack(xb, n), packed.unpack(vb, n)
                keep = (x >= lo) & (x <= hi) & ~np.isnan(y)  # NaN x (no step) compares false: left out
                xs.append(x[keep])
                ys.append(y[keep])
        return np.concatenate(xs), np.concatenate(ys)

    @staticmethod
    def _session_start(conn, session_id: int) -> float:
        """Walltime of the session's first numeric point (over all its series), else its start."""
        first = conn.scalar(select(func.min(SeriesRow.first_wall)).where(SeriesRow.session_id == session_id))
        if first is None:
            first = conn.scalar(select(SessionRow.started).where(SessionRow.id == session_id))
        return first or 0.0
