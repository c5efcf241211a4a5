"""What the web dashboard reads: session search, metric keys of many sessions, and downsampled
series that answer in milliseconds however long the run was.

Downsampling reads per-block extremes, not raw points. Each series' numeric points are cut, in
the order they were stored, into blocks of BLOCK points; a `point_blocks` row keeps a block's id
range, x ranges (step, walltime) and its lowest and highest point. A 100,000-point series is
~800 block rows: drawing it reads those, plus the raw points of the two blocks at the edges of
the visible range, and min/max-decimates the candidates (nsml.core.downsample). Every point
returned is a real point, and a spike, being its block's maximum, always survives. When the
visible range holds few points (zoomed in) the raw points are decimated instead, exactly.

Blocks are written right after each metrics ingest (ingest_journal below wraps MetricsMixin's),
from the tuples it just inserted, so a finished session's chart never waits; a reader
that finds a series grown past its blocks (its `count` differs from the `seen` stored with
them: a database from before blocks, a failed roll-up) rolls it up first. Scanning the raw
points instead costs ~30-120 ms per 100,000 on SQLite, even through a covering index
(bench/README.md): far too slow for 150 overlaid series.
"""

import logging
from collections.abc import Iterable
from itertools import groupby
from operator import itemgetter

from sqlalchemy import String, cast, func, or_, select, text

from nsml.core.downsample import finite_points, intervals_for, minmax_downsample
from nsml.core.entities import Session

from .models import PointBlockRow, SeriesRow, SessionRow
from .sessions import in_scope, to_session

log = logging.getLogger("nsml.store")
BLOCK = 128  # points per block: ~800 rows for 100,000 points, which a chart of 500 intervals reads
AXES = ("step", "walltime", "relative")


_BLOCK_COLUMNS = ("series_id", "first_id", "last_id", "n", "seen", "step0", "step1", "wall0", "wall1",
                  "lo_value", "lo_step", "lo_wall", "hi_value", "hi_step", "hi_wall")


def _like(q: str) -> str:
    """A LIKE pattern matching q anywhere, with LIKE's own wildcards taken literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _summarise(seen: int, rows: list[tuple]) -> list[dict]:
    """point_blocks rows for one series' (series id, id, step, walltime, value) rows in id
    order, BLOCK rows a block.

    min()/max() with itemgetter keys run in C: rolling up costs less than reading the points back.
    """
    out = []
    for i in range(0, len(rows), BLOCK):
        chunk = rows[i:i + BLOCK]
        lo, hi = min(chunk, key=_value), max(chunk, key=_value)
        steps = [r[2] for r in chunk if r[2] is not None]
        walls = list(map(_wall, chunk))
        out.append(dict(zip(_BLOCK_COLUMNS, (
            chunk[0][0], chunk[0][1], chunk[-1][1], len(chunk), seen,
            min(steps) if steps else None, max(steps) if steps else None, min(walls), max(walls),
            lo[4], lo[2], lo[3], hi[4], hi[2], hi[3]))))
    return out


_wall, _value = itemgetter(3), itemgetter(4)


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
        out. `count` is the number of points in range (blocks cut by the range's edges are
        counted exactly; none other is cut); `exact` is True when nothing was left out."""
        if x not in AXES:
            raise ValueError(f"x must be one of {', '.join(AXES)}, not {x!r}")
        buckets = max(1, int(buckets))
        empty = {"x": [], "y": [], "count": 0, "exact": True}
        with self.engine.connect() as conn:
            found = conn.execute(_SERIES, {"x": session_id, "k": key}).first()
        if found is None:
            return empty
        series_id, count, seen = found
        if count != seen:  # grown past its blocks: a database from before them, a failed roll-up
            self._roll_up(session_id)
        offset = self._session_start(session_id) if x == "relative" else 0.0
        lo = -float("inf") if xmin is None else xmin + offset
        hi = float("inf") if xmax is None else xmax + offset
        by_step = x == "step"
        axis = "step" if by_step else "wall"
        with self.engine.connect() as conn:
            overlapping = conn.execute(text(
                f"SELECT first_id, last_id, n, {axis}0, {axis}1, lo_value, lo_{axis}, hi_value, hi_{axis}"
                f" FROM point_blocks WHERE series_id = :s AND n > 0 AND {axis}1 >= :lo AND {axis}0 <= :hi ORDER BY first_id"),
                {"s": series_id, "lo": lo, "hi": hi}).all()
            total = sum(b[2] for b in overlapping)
            if not total:
                return empty
            if total <= 2 * buckets or total < intervals_for(buckets) * BLOCK:
                # Few points in range (or blocks too coarse for the intervals): decimate the raw ones.
                points = self._raw(conn, series_id, overlapping, by_step, lo, hi, whole=True)
                kept = minmax_downsample(points, buckets)
                return self._answer(kept, offset, len(points), len(kept) == len(points))
            # Raw points where blocks cannot stand in: blocks cut by the range's edges, and the
            # blocks holding the range's first and last points (so the line ends where it does).
            first = min(overlapping, key=_x0)
            last = max(overlapping, key=_x1)
            edges = [b for b in overlapping if b[3] < lo or b[4] > hi or b is first or b is last]
            candidates = self._raw(conn, series_id, edges, by_step, lo, hi)
            counted = total - sum(b[2] for b in edges) + len(candidates)
            # The other blocks stand in by their extremes (finite by construction: `value` holds
            # finite numbers only); an extreme without a step has no place on the step axis.
            edge_ids = {b[0] for b in edges}
            for b in overlapping:
                if b[0] not in edge_ids:
                    if b[6] is not None:
                        candidates.append((b[6], b[5]))
                    if b[8] is not None:
                        candidates.append((b[8], b[7]))
        kept = minmax_downsample(candidates, buckets)
        return self._answer(kept, offset, counted, False)

    @staticmethod
    def _answer(points: list[tuple[float, float]], offset: float, count: int, exact: bool) -> dict:
        return {"x": [p[0] - offset for p in points], "y": [p[1] for p in points], "count": count, "exact": exact}

    @staticmethod
    def _raw(conn, series_id: int, blocks: list, by_step: bool, lo: float, hi: float, whole: bool = False) -> list[tuple[float, float]]:
        """Finite (x, value) points within [lo, hi]: of the whole series (`whole`, by step through
        the (series_id, step) index), or of the given blocks, read by their points.id ranges.

        `+series_id` keeps SQLite off the (series_id, step) index for the id ranges: that index
        would visit every point of the series, the rowid range only the blocks' span.
        """
        column = "step" if by_step else "walltime"
        if whole and by_step:
            rows = conn.execute(text(
                "SELECT step, value FROM points WHERE series_id = :s AND step BETWEEN :lo AND :hi"
                " AND value IS NOT NULL"), {"s": series_id, "lo": lo, "hi": hi}).all()
            return finite_points(rows)
        spans = [(min(b[0] for b in blocks), max(b[1] for b in blocks))] if whole else [(b[0], b[1]) for b in blocks]
        points = []
        for first, last in spans:
            points.extend(conn.execute(text(
                f"SELECT {column}, value FROM points WHERE id BETWEEN :a AND :b AND +series_id = :s"
                f" AND value IS NOT NULL AND {column} BETWEEN :lo AND :hi"),
                {"a": first, "b": last, "s": series_id, "lo": lo, "hi": hi}).all())
        return finite_points(points)

    # -- roll-ups ---------------------------------------------------------------------------
    def ingest_journal(self, session_id: int, offset: int, data: bytes, notes: list | None = None) -> int:
        """The metrics ingest (MetricsMixin), then the new points rolled up into blocks, from
        the tuples the ingest just wrote, so no chart ever waits for a series to be rolled up.

        Rolling up is a cache refresh: if it fails, the points are stored all the same and
        the next read rolls them up.
        """
        with self._write_lock:  # reentrant: keeps another ingest from landing in between
            self._written = None
            end = super().ingest_journal(session_id, offset, data, notes)
            written, self._written = self._written, None
            try:
                self._roll_up(session_id, written)
            except Exception:
                log.exception("rolling up the metrics of session #%s failed", session_id)
            return end

    def _points_written(self, session_id: int, conn, points: list[tuple]) -> None:
        """Keep what the ingest inserted, with its ids, so the roll-up need not read it back.

        SQLite gives rows inserted in one transaction (under the store's write lock) the ids
        after the largest one, in order: the last id and the count give them all. Elsewhere the
        roll-up reads the new rows back instead.
        """
        if conn.dialect.name == "sqlite":
            last = conn.exec_driver_sql("SELECT max(rowid) FROM points").scalar()
            self._written = (last - len(points) + 1, points)

    def _roll_up(self, session_id: int, written: tuple[int, list[tuple]] | None = None) -> None:
        """Bring the blocks of the session's series up to date where the series grew."""
        with self.engine.connect() as conn:
            if not _stale(conn, session_id):
                return
        with self._write() as orm:
            orm.get(SessionRow, session_id, with_for_update=True)  # one roll-up of a session at a time (PostgreSQL)
            starts: dict[int, int] = {}  # series id -> first points.id to roll up
            full_last: dict[int, int] = {}  # series id -> its last block, when full
            for series_id, count, first, last, n, seen in orm.execute(_LAST_BLOCKS, {"x": session_id}).all():
                if count == seen:
                    continue
                if first is None:
                    starts[series_id] = 0
                elif n < BLOCK:  # a partial block (or the empty marker, first_id 0): roll it again with what came after
                    orm.execute(text("DELETE FROM point_blocks WHERE series_id = :s AND first_id = :f"),
                                {"s": series_id, "f": first})
                    starts[series_id] = first
                else:
                    starts[series_id], full_last[series_id] = last + 1, first
            if not starts:
                return  # another reader did it meanwhile
            counts = dict(orm.execute(select(SeriesRow.id, SeriesRow.count).where(SeriesRow.id.in_(list(starts)))).all())
            blocks = []
            new = self._new_points(orm, starts, written)
            for sid in starts:
                rows = new.get(sid)
                if rows:
                    blocks.extend(_summarise(counts[sid], rows))
                elif sid in full_last:  # grew by values that are not numbers: nothing to roll up
                    orm.execute(text("UPDATE point_blocks SET seen = :c WHERE series_id = :s AND first_id = :f"),
                                {"c": counts[sid], "s": sid, "f": full_last[sid]})
                else:  # no number at all yet (a text series): an empty marker block says "seen"
                    blocks.append(dict.fromkeys(_BLOCK_COLUMNS, 0.0) | dict(
                        series_id=sid, first_id=0, last_id=0, n=0, seen=counts[sid],
                        step0=None, step1=None, lo_step=None, hi_step=None))
            if blocks:
                orm.execute(PointBlockRow.__table__.insert(), blocks)

    def _new_points(self, orm, starts: dict[int, int], written: tuple[int, list[tuple]] | None) -> dict[int, list[tuple]]:
        """{series id: its (series id, id, step, walltime, value) numeric points from its start
        on, in id order}: the rows the ingest just `written` (first id, tuples) from memory,
        and from the database only the older ones a partial block still needs."""
        if written is None:
            return self._read_points(orm, starts)
        first_id, points = written
        fresh: dict[int, list[tuple]] = {}
        for i, (sid, step, wall, value, _json) in enumerate(points):
            if value is not None and value == value and sid in starts:  # a number, not NaN (stored as NULL)
                fresh.setdefault(sid, []).append((sid, first_id + i, step, wall, value))
        older = {sid: at for sid, at in starts.items() if at < first_id}
        out = self._read_points(orm, older, below=first_id) if older else {}
        for sid, rows in fresh.items():
            out[sid] = out.get(sid, []) + [r for r in rows if r[1] >= starts[sid]]
        return out

    @staticmethod
    def _read_points(orm, starts: dict[int, int], below: int | None = None) -> dict[int, list[tuple]]:
        """The same, read from the database (ids under `below` only, when given). On SQLite
        through the driver's cursor: plain tuples, no Row objects."""
        conn = orm.connection()
        fresh = [s for s, at in starts.items() if at == 0]
        rolled = [s for s, at in starts.items() if at > 0]
        queries = []
        if fresh:  # no block yet (a new series, or a database from before blocks): the series index
            queries.append((f"series_id IN ({_ids(fresh)})", 0))
        if rolled:
            # The new points are the newest rows: a rowid range from the earliest start visits
            # just those (`+series_id` keeps SQLite off the index, which would visit them all).
            queries.append((f"id >= {{}} AND +series_id IN ({_ids(rolled)})", min(starts[s] for s in rolled)))
        out: dict[int, list[tuple]] = {}
        for where, start in queries:
            sql = ("SELECT series_id, id, step, walltime, value FROM points WHERE "
                   + where.format(int(start)) + (f" AND id < {int(below)}" if below is not None else "")
                   + " AND value IS NOT NULL ORDER BY series_id, id")
            if conn.dialect.name == "sqlite":
                rows = conn.connection.driver_connection.execute(sql).fetchall()
            else:
                rows = conn.exec_driver_sql(sql).all()
            for sid, group in groupby(rows, key=itemgetter(0)):
                group = list(group)
                skip = 0
                while skip < len(group) and group[skip][1] < starts[sid]:
                    skip += 1  # points of an earlier block of this series
                if skip < len(group):
                    out[sid] = group[skip:]
        return out

    def _session_start(self, session_id: int) -> float:
        """Walltime of the session's first numeric point (over all its series), else its start."""
        with self._read() as orm:
            first = orm.scalar(select(func.min(PointBlockRow.wall0))
                               .join(SeriesRow, PointBlockRow.series_id == SeriesRow.id)
                               .where(SeriesRow.session_id == session_id, PointBlockRow.n > 0))
            if first is None:
                first = orm.scalar(select(SessionRow.started).where(SessionRow.id == session_id))
        return first or 0.0


def _stale(conn, session_id: int) -> bool:
    """Whether some series of the session grew since its blocks were written."""
    return any(r[1] != r[5] for r in conn.execute(_LAST_BLOCKS, {"x": session_id}))


def _ids(ids: list[int]) -> str:
    return ", ".join(str(int(i)) for i in ids)


_x0 = itemgetter(3)
_x1 = itemgetter(4)

# One series with its count and the count its last block saw (NULL when it has no block yet).
_SERIES = text(
    "SELECT s.id, s.count, (SELECT b.seen FROM point_blocks b WHERE b.series_id = s.id ORDER BY b.first_id DESC LIMIT 1)"
    " FROM series s WHERE s.session_id = :x AND s.key = :k")

# Each series of a session with its count and its last block (NULLs when it has none).
_LAST_BLOCKS = text(
    "SELECT s.id, s.count, b.first_id, b.last_id, b.n, b.seen FROM series s"
    " LEFT JOIN point_blocks b ON b.series_id = s.id"
    " AND b.first_id = (SELECT MAX(first_id) FROM point_blocks WHERE series_id = s.id)"
    " WHERE s.session_id = :x")
