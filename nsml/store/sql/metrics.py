"""Metrics: the journal a session writes, ingested idempotently into packed chunks
(nsml/store/packed.py), and read back as series, a chunk at a time."""

import gc
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from operator import itemgetter, methodcaller
from typing import Any, NamedTuple

import numpy as np
import orjson
from sqlalchemy import bindparam, delete, insert, select

from nsml.core import params, spool
from nsml.core.entities import MetricPoint
from nsml.core.errors import Conflict, InvalidInput, NotFound, StorageFull
from nsml.store import packed

from .engine import binary
from .models import PointChunkRow, SeriesRow, SessionParamRow, SessionRow


class SeriesSummary(NamedTuple):
    """What the runs table shows of a series: SeriesRow's summary columns."""

    count: int
    numeric: int
    last_value: float | None
    last_step: float | None
    min_value: float | None
    min_step: float | None
    max_value: float | None
    max_step: float | None


def _split_value(value: Any) -> tuple[float | None, str | None]:
    """Numbers go to the REAL column; integers too large for a float, and anything else, to the
    JSON column, so every value reads back as it was. Raises ValueError for what is not stored:
    NaN and infinities (top-level or nested: they cannot be graphed, sorted or compared, and are
    not JSON) and values over spool.MAX_VALUE as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int beyond a float's range: exact, as JSON
            number = None
        if number is not None:
            if not math.isfinite(number):
                raise ValueError("not finite")
            return number, None
    encoded = json.dumps(value, allow_nan=False)  # ValueError for a NaN inside a list or dict
    if len(encoded) > spool.MAX_VALUE:
        raise OverflowError(len(encoded))
    return None, encoded


def _join_value(value: float | None, value_json: str | None) -> Any:
    return value if value_json is None else json.loads(value_json)


class _Notes:
    """What an ingest refused, for the session's log: (about, text) pairs, one per `about` and
    at most spool.NOTES_PER_CHUNK per chunk; the supervisor writes them, once per `about`."""

    def __init__(self, out: list | None):
        self.out = out
        self.seen: set[str] = set()

    def add(self, about: str, text: str) -> None:
        if self.out is None or about in self.seen or len(self.seen) >= spool.NOTES_PER_CHUNK:
            return
        self.seen.add(about)
        self.out.append((about, "[nsml] " + text))

    def value(self, key: str, value: Any, step: Any, exc: Exception) -> None:
        at = "" if step is None else f" at step {step}"
        if isinstance(exc, OverflowError):
            self.add(f"big:{key}", f"the value of {_shown(key)}{at} ({exc.args[0]} bytes as JSON) was not stored: "
                                   f"values may be at most {spool.MAX_VALUE} bytes")
        elif isinstance(value, float):
            self.add(f"finite:{key}", f"{_shown(key)}={value!r}{at} was not stored: metric values must be finite numbers")
        else:
            self.add(f"finite:{key}", f"the value of {_shown(key)}{at} holds NaN or an infinity and was not stored: "
                                      "metric values must be finite numbers")


def _shown(key: str) -> str:
    """A key as the log shows it: itself when short and printable, else a shortened repr."""
    if len(key) <= 80 and key.isprintable():
        return key
    return repr(key[:60]) + ("…" if len(key) > 60 else "")


def _parse_pieces(chunk: bytes, notes: _Notes):
    """The JSON values of a chunk of complete lines, as a generator of lists (pieces); a line
    that does not parse, or is longer than spool.MAX_LINE (never parsed), is left out with a note.

    Pieces of about MAX_LINE are parsed as one JSON array each (one C call instead of one per
    line, most of the parsing cost) and handed on before the next is parsed, so memory stays
    bounded by the piece, not the chunk; a piece that fails is parsed line by line.
    """
    pos = 0
    for start, end in spool.long_lines(chunk) + [(len(chunk), len(chunk))]:
        while pos < start:  # ordinary lines up to the next long one
            cut = chunk.rfind(b"\n", pos, min(start, pos + spool.MAX_LINE)) + 1
            if cut <= pos:
                cut = start
            yield _parse_piece(chunk[pos:cut], notes)
            pos = cut
        if end > start:
            notes.add("long", f"a journal line of {end - start} bytes was skipped: lines may be at most {spool.MAX_LINE} bytes")
        pos = max(pos, end)


@contextmanager
def _no_gc():
    """The cyclic garbage collector off during an ingest: the ~100,000 dicts a chunk parses
    into would trigger a dozen collections, each walking every object the server holds (most
    of the parsing time when measured), and re-enabling it while they are alive would walk
    them all once more. Freed before the end, they leave nothing to collect."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse_piece(piece: bytes, notes: _Notes) -> list:
    """orjson (several times faster than json) for a piece of strict JSON; json for one holding
    the NaN/Infinity tokens report() writes for such values, and line by line for one with a
    line that is not JSON."""
    lines = piece.count(b"\n")
    array = b"[" + piece[:-1].replace(b"\n", b",") + b"]"
    for loads in (orjson.loads, json.loads):
        try:
            items = loads(array)
            if len(items) == lines:
                return items
            break  # a torn line merged with the next: line by line
        except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
            pass
    items = []
    for raw in piece.splitlines():
        try:
            items.append(json.loads(raw))
        except (ValueError, RecursionError):  # not JSON, not UTF-8, a torn line from a killed process
            notes.add("garbage", "a journal line that is not JSON was skipped (the journal is nsml.report's: "
                                 "write metrics with nsml.report, not into the file)")
    return items


class JournalPost(NamedTuple):
    """One supervisor's journal bytes from `offset`; `notes` collects what the ingest refused;
    `heartbeat`: a time to record as its supervisor's heartbeat (None: leave it)."""

    session_id: int
    offset: int
    data: bytes
    notes: list | None = None
    heartbeat: float | None = None


def _ingest_one(orm, post: JournalPost) -> int:
    noted = _Notes(post.notes)
    row = orm.get(SessionRow, post.session_id, with_for_update=True)
    if row is None:
        raise NotFound(f"Session #{post.session_id} does not exist.")
    have = row.journal_offset
    if post.offset > have:
        raise Conflict(f"journal gap: the server has {have} bytes, the upload starts at {post.offset}")
    if post.heartbeat is not None:
        row.heartbeat = post.heartbeat
    data = post.data[have - post.offset:]
    end = data.rfind(b"\n") + 1
    if end == 0:
        return have
    batch = _Batch(orm, row, noted)
    with _no_gc():
        for items in _parse_pieces(data[:end], noted):
            batch.add_items(items)
            del items
    batch.finish()
    row.journal_offset = have + end
    return row.journal_offset


class MetricsMixin:
    def ingest_journal(self, session_id: int, offset: int, data: bytes, notes: list | None = None) -> int:
        """Store the complete lines of data, which starts at byte `offset` of the journal.

        Bytes the server already has are skipped, so a supervisor that retries after a lost
        answer never duplicates a point. Returns the new journal offset.

        The session wrote these bytes, so it is trusted with nothing: lines that are not
        metric records, over-long lines and keys, keys past spool.MAX_SERIES, NaN and infinite
        numbers and values over spool.MAX_VALUE are not stored, each with an (about, text) pair
        appended to `notes` for the session's log; the rest of the line is. A non-finite step
        is treated as no step, an odd walltime as none (0). Nothing but finite numbers and
        bounded JSON reaches the points, the summary or the last values.

        All of it happens in one transaction (points, series counts, summary, offset), so a
        point is stored exactly when the offset that covers it is. Speed (bench/README.md): the
        chunk is parsed a piece at a time with one json.loads each; each series' new points
        are gathered into three lists, then packed (its last chunk rewritten to grow, new
        chunks inserted: a few rows per 1,024 points) and its summary updated, with numpy.
        """
        found = self.ingest_journals([JournalPost(session_id, offset, data, notes)])[0]
        if isinstance(found, Exception):
            raise found
        return found

    def ingest_journals(self, posts: "list[JournalPost]") -> "list[int | Exception]":
        """ingest_journal for several posts (of several sessions) in one transaction: the
        server's journal ingest takes every post waiting at once (nsml/server/ingest.py), so a
        hundred sessions posting together cost one commit, not a hundred. Each post's result
        is its new offset, or the Conflict or NotFound it met, which leaves the others alone.
        A post with `heartbeat` set also records its supervisor's heartbeat then: a session
        whose journal flows needs no separate heartbeat call.

        Anything else that fails (a bug, a line the checks missed) fails only its own post:
        the batch is rolled back and its posts ingested again one transaction each."""
        try:
            with self._write() as orm:
                return [self._ingest_caught(orm, post) for post in posts]
        except (Conflict, NotFound, StorageFull):
            raise  # not raised by a post (each is caught): the commit itself
        except Exception:
            if len(posts) == 1:
                raise
        results: list = []
        for post in posts:
            try:
                with self._write() as orm:
                    results.append(self._ingest_caught(orm, post))
            except Exception as exc:  # noqa: BLE001 - handed back to that post's caller
                results.append(exc)
        return results

    def _ingest_caught(self, orm, post: "JournalPost") -> "int | Exception":
        try:
            return _ingest_one(orm, post)
        except (Conflict, NotFound) as exc:  # checked before anything is written
            return exc

    def skip_journal(self, session_id: int, offset: int, length: int) -> int:
        """Move the journal offset past `length` bytes at `offset` that the supervisor did not
        send (a line longer than spool.MAX_LINE); idempotent like ingest_journal. Returns the
        new offset; Conflict if `offset` is past what the server has."""
        with self._write() as orm:
            row = orm.get(SessionRow, session_id, with_for_update=True)
            if row is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            if offset > row.journal_offset:
                raise Conflict(f"journal gap: the server has {row.journal_offset} bytes, the skip starts at {offset}")
            row.journal_offset = max(row.journal_offset, offset + length)
            return row.journal_offset

    def series_keys(self, session_id: int) -> dict[str, int]:
        with self._read() as orm:
            rows = orm.execute(select(SeriesRow.key, SeriesRow.count).where(SeriesRow.session_id == session_id))
            return dict(sorted(rows.all()))

    def series_summaries(self, session_ids: list[int]) -> dict[int, dict[str, SeriesSummary]]:
        """{session id: {key: its summary}} for the sessions asked for (those without metrics
        are left out): kept up to date by every ingest, so this never reads a point."""
        out: dict[int, dict[str, SeriesSummary]] = {}
        columns = (SeriesRow.session_id, SeriesRow.key, *(getattr(SeriesRow, f) for f in SeriesSummary._fields))
        with self._read() as orm:
            for i in range(0, len(session_ids), 500):
                for row in orm.execute(select(*columns).where(SeriesRow.session_id.in_(session_ids[i:i + 500]))):
                    out.setdefault(row[0], {})[row[1]] = SeriesSummary(*row[2:])
        return out

    def read_series(self, session_id: int, key: str) -> "SeriesReader | None":
        """A reader of the whole series in (step, report order) order, points without a step
        first; None if the session has no such key. It holds a snapshot of the series: points
        ingested after this call are not in what it reads."""
        with self._read() as orm:
            found = orm.execute(select(SeriesRow.id, SeriesRow.ordered, SeriesRow.count)
                                .where(SeriesRow.session_id == session_id, SeriesRow.key == key)).first()
            if found is None:
                return None
            chunks = orm.execute(select(PointChunkRow.seq, PointChunkRow.n, PointChunkRow.nulls, PointChunkRow.step0,
                                        PointChunkRow.step1).where(PointChunkRow.series_id == found[0])
                                 .order_by(PointChunkRow.seq)).all()
        return SeriesReader(self.engine, found[0], found[1], [tuple(c) for c in chunks])

    def metric_points(self, session_id: int, key: str) -> list[MetricPoint]:
        """The whole series as MetricPoint objects: for small series and tests. Whatever may be
        long is read with read_series, a chunk at a time."""
        reader = self.read_series(session_id, key)
        if reader is None:
            return []
        out = []
        for steps, walls, values in reader.points():
            out.extend(MetricPoint(key, st, w, v) for st, w, v in zip(steps, walls, values))
        return out

    def count_points(self, session_id: int) -> int:
        with self._read() as orm:
            return sum(orm.scalars(select(SeriesRow.count).where(SeriesRow.session_id == session_id)))


class SeriesReader:
    """A series read a chunk at a time, in bounded memory (read_series makes one).

    A series whose points came in step order (SeriesRow.ordered, nearly all) is read chunk by
    chunk as stored. Otherwise chunks whose step ranges overlap are read together and merged;
    memory is then bounded by the largest such group.
    """

    def __init__(self, engine, series_id: int, ordered: bool, chunks: list[tuple]):
        self.engine, self.series_id, self.ordered = engine, series_id, ordered
        self.sizes = {seq: n for seq, n, *_ in chunks}  # the snapshot: later points are not read
        self.count = sum(self.sizes.values())
        self.groups = [[seq] for seq, *_ in chunks] if ordered else _overlapping(chunks)

    def columns(self, *names: str) -> Iterator[list[np.ndarray]]:
        """For each group of chunks, the named columns (steps, walls, vals: float64 arrays,
        NaN for no step or a value that is not a number) in series order.

        An ordered series is one query whose rows are taken as they come (the driver's cursor
        streams them), a query per chunk would cost more than the unpacking. Only an unordered
        series needs its steps to sort by: an ordered one reads the named columns alone."""
        wanted = list(dict.fromkeys(names if self.ordered else ("steps",) + names))
        c = PointChunkRow.__table__.c
        columns = [c.seq, *(c[name] for name in wanted)]
        with self.engine.connect() as conn:
            if self.ordered:
                last = max(self.sizes, default=-1)
                rows = conn.execution_options(yield_per=64).execute(
                    binary(select(*columns).where(c.series_id == self.series_id, c.seq <= last).order_by(c.seq)))
                for row in rows:
                    n = self.sizes[row[0]]
                    yield [packed.unpack(row[1 + wanted.index(name)], n) for name in names]
                return
            for group in self.groups:
                rows = conn.execute(binary(select(*columns).where(c.series_id == self.series_id, c.seq.in_(group))
                                           .order_by(c.seq))).all()
                cols = {name: [packed.unpack(r[1 + i], self.sizes[r[0]]) for r in rows] for i, name in enumerate(wanted)}
                order = _step_order(np.concatenate(cols["steps"]))
                yield [np.concatenate(cols[name])[order] for name in names]

    def extras(self) -> Iterator[dict[int, Any]]:
        """For each group, as columns() yields them: position -> value of the non-numbers."""
        c = PointChunkRow.__table__.c
        with self.engine.connect() as conn:
            if self.ordered:
                last = max(self.sizes, default=-1)
                found = dict(conn.execute(select(c.seq, c.extra).where(
                    c.series_id == self.series_id, c.seq <= last, c.extra.is_not(None))).all())
                for seq in sorted(self.sizes):
                    n = self.sizes[seq]
                    yield {i: v for i, v in packed.extra_values(found.get(seq)).items() if i < n}
                return
            for group in self.groups:
                rows = conn.execute(binary(select(c.seq, c.extra, c.steps)
                                           .where(c.series_id == self.series_id, c.seq.in_(group)).order_by(c.seq))).all()
                found, at = {}, 0
                for seq, extra, _ in rows:
                    n = self.sizes[seq]
                    found.update({at + i: v for i, v in packed.extra_values(extra).items() if i < n})
                    at += n
                if found:
                    steps = np.concatenate([packed.unpack(r[2], self.sizes[r[0]]) for r in rows])
                    where = np.empty(len(steps), dtype=np.int64)
                    where[_step_order(steps)] = np.arange(len(steps))
                    found = {int(where[i]): v for i, v in found.items()}
                yield found

    def points(self) -> Iterator[tuple[list, list, list]]:
        """(steps, walltimes, values) as Python lists, a group at a time: steps None where there
        is none, values as reported."""
        for (steps, walls, values), extra in zip(self.columns("steps", "walls", "vals"), self.extras()):
            st = steps.tolist()
            if np.isnan(steps).any():
                st = [None if x != x else x for x in st]
            vs = values.tolist()
            for i, v in extra.items():
                vs[i] = v
            yield st, walls.tolist(), vs


def _step_order(steps: np.ndarray) -> np.ndarray:
    """The permutation that sorts points by step (none first), report order among equals."""
    keys = np.where(np.isnan(steps), -np.inf, steps)
    return np.argsort(keys, kind="stable")


def _overlapping(chunks: list[tuple]) -> list[list[int]]:
    """Chunks (seq, n, nulls, step0, step1) grouped so that no two groups' step ranges overlap,
    groups in step order: each group can then be sorted alone."""
    def span(c):
        low = -math.inf if c[2] or c[3] is None else c[3]
        return low, (-math.inf if c[4] is None else c[4])
    groups, top = [], None
    for c in sorted(chunks, key=lambda c: (span(c)[0], c[0])):
        low, high = span(c)
        if groups and low <= top:  # equal counts as overlapping: the tie goes by report order
            groups[-1].append(c[0])
            top = max(top, high)
        else:
            groups.append([c[0]])
            top = high
    return [sorted(g) for g in groups]


_NAN = float("nan")


class _NewPoints:
    """One series' points in one ingest, in report order: parts (float64 steps, walls and values
    arrays, from whole plain pieces) and, after them, points added one at a time by the line
    by line path (lists, turned into a part when a plain piece follows)."""

    __slots__ = ("parts", "steps", "walls", "values", "extra")

    def __init__(self):
        self.parts: list[tuple] = []  # (steps, walls, values, extra) with arrays
        self.steps: list = []  # float or None
        self.walls: list[float] = []
        self.values: list[float] = []  # NaN where the value is not a number
        self.extra: dict[int, str] = {}  # position in `values` -> JSON text of a value that is not a number

    def add(self, steps: np.ndarray, walls: np.ndarray, values: np.ndarray) -> None:
        self._close_lists()
        self.parts.append((steps, walls, values, {}))

    def _close_lists(self) -> None:
        if self.steps:
            self.parts.append((packed.as_column(self.steps), np.array(self.walls, dtype=np.float64),
                               np.array(self.values, dtype=np.float64), self.extra))
            self.steps, self.walls, self.values, self.extra = [], [], [], {}

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, str]]:
        """All of them: steps, walls, values and {position: JSON} of the non-numbers."""
        self._close_lists()
        if len(self.parts) == 1:
            return self.parts[0]
        extra, at = {}, 0
        for part in self.parts:
            extra.update({at + i: v for i, v in part[3].items()})
            at += len(part[0])
        return tuple(np.concatenate([part[i] for part in self.parts]) for i in range(3)) + (extra,)


_K, _STEP, _W, _V, _S = (methodcaller("get", name) for name in ("k", "step", "w", "v", "s"))
_NUMBERS = {int, float}
_MAX_PLAIN_KEYS = 64  # more distinct keys in a piece: line by line (each key costs a pass over the piece)


def _plain(items: list):
    """For a piece of plain metrics lines only (dicts of kind m with an int or float step, a
    float walltime, a dict of values; steps, walltimes and values finite, values int or float,
    at most _MAX_PLAIN_KEYS keys): (steps, walls as float64 arrays, the steps as given, the
    values dicts, {key: (line positions or None for all lines, values as float64)}). None for
    any other piece, which the line by line path then takes. Every pass runs in C (map,
    itemgetter, numpy) but the ones over positions of keys that some lines lack."""
    if not items or set(map(type, items)) != {dict} or set(map(_K, items)) != {spool.METRICS}:
        return None
    given = list(map(_STEP, items))
    walls = list(map(_W, items))
    vs = list(map(_V, items))
    if not set(map(type, given)) <= _NUMBERS or set(map(type, walls)) != {float} or set(map(type, vs)) != {dict}:
        return None
    try:
        steps = np.array(given, dtype=np.float64)
    except OverflowError:  # an int beyond a float's range
        return None
    wall = np.array(walls, dtype=np.float64)
    if not (np.isfinite(steps).all() and np.isfinite(wall).all()):
        return None
    keys = dict.fromkeys(chain.from_iterable(vs))
    if len(keys) > _MAX_PLAIN_KEYS:
        return None
    columns = {}
    for key in keys:
        where = None
        try:
            column = list(map(itemgetter(key), vs))
        except KeyError:  # not on every line
            where = [i for i, v in enumerate(vs) if key in v]
            column = [vs[i][key] for i in where]
        if not set(map(type, column)) <= _NUMBERS:
            return None
        try:
            values = np.array(column, dtype=np.float64)
        except OverflowError:
            return None
        if not np.isfinite(values).all():
            return None
        columns[key] = (where if where is None else np.array(where, dtype=np.int64), values)
    return steps, wall, given, vs, columns


# Built once: making a statement costs more than running it (a few a series, every ingest).
_CHUNKS = PointChunkRow.__table__
_TAIL = select(_CHUNKS.c.n, _CHUNKS.c.steps, _CHUNKS.c.walls, _CHUNKS.c.vals, _CHUNKS.c.extra).where(
    _CHUNKS.c.series_id == bindparam("series"), _CHUNKS.c.seq == bindparam("seq"))
_DROP = _CHUNKS.delete().where(_CHUNKS.c.series_id == bindparam("series"), _CHUNKS.c.seq == bindparam("seq"))
_INSERT = insert(_CHUNKS)


def _append_points(conn, s: SeriesRow, new: _NewPoints) -> None:
    """Add the new points to the series: its last chunk grows to CHUNK points, then new chunks
    follow; its summary is brought up to date from the new points alone."""
    steps, walls, values, extra = new.columns()
    _summarise(s, steps, walls, values)
    seq = s.chunks
    if seq:  # a partial last chunk is rewritten with the new points after its own
        tail = conn.execute(_TAIL, {"series": s.id, "seq": seq - 1}).first()
        if tail is not None and tail.n < packed.CHUNK:
            extra = {**packed.extra_values_text(tail.extra), **{tail.n + i: v for i, v in extra.items()}}
            steps = np.concatenate((packed.unpack(tail.steps), steps))
            walls = np.concatenate((packed.unpack(tail.walls), walls))
            values = np.concatenate((packed.unpack(tail.vals), values))
            seq -= 1
            conn.execute(_DROP, {"series": s.id, "seq": seq})
    rows = []
    for start in range(0, len(steps), packed.CHUNK):
        end = start + packed.CHUNK
        part = {i - start: v for i, v in extra.items() if start <= i < end} if extra else {}
        rows.append(packed.chunk_row(s.id, seq, steps[start:end], walls[start:end], values[start:end], part))
        seq += 1
    conn.execute(_INSERT, rows)
    s.chunks = seq


def _summarise(s: SeriesRow, steps: np.ndarray, walls: np.ndarray, values: np.ndarray) -> None:
    """SeriesRow's summary, updated by new points (in report order) as if computed over all."""
    keys = np.where(np.isnan(steps), -np.inf, steps)
    if s.ordered:
        before = -math.inf if s.tail_step is None else s.tail_step
        s.ordered = bool((s.count == 0 or before <= keys[0]) and (keys[1:] >= keys[:-1]).all())
    s.tail_step = None if math.isnan(steps[-1]) else float(steps[-1])
    s.count += len(steps)
    numbers = np.flatnonzero(~np.isnan(values))
    if not len(numbers):
        return
    s.numeric += len(numbers)
    if s.first_wall is None:
        s.first_wall = float(walls[numbers[0]])
    last = numbers[-1]
    s.last_value, s.last_step, s.last_wall = float(values[last]), packed.none_if_nan(steps[last]), float(walls[last])
    lo, hi = np.nanargmin(values), np.nanargmax(values)
    if s.min_value is None or values[lo] < s.min_value:  # strict: the first of equal lows stays
        s.min_value, s.min_step = float(values[lo]), packed.none_if_nan(steps[lo])
    if s.max_value is None or values[hi] > s.max_value:
        s.max_value, s.max_step = float(values[hi]), packed.none_if_nan(steps[hi])



class _Batch:
    """One ingest's new points and the session row's summary, last values and report count.

    Pieces of plain lines (metrics with numeric steps, walltimes and values, the usual case)
    take add_plain: a column at a time with numpy, no Python work per value. Anything else
    takes add_line, a line at a time, with every check and note. Both give the same result
    (tests/store/test_packed_series.py compares them).
    """

    def __init__(self, orm, row: SessionRow, noted: _Notes):
        self.orm, self.session_id, self.noted = orm, row.id, noted
        self.row = row
        self.series = {s.key: s for s in orm.scalars(select(SeriesRow).where(SeriesRow.session_id == row.id))}
        self.new: dict[str, _NewPoints] = {}  # key -> its points in this ingest
        self.summary = json.loads(row.summary)
        self.last = json.loads(row.last_values)
        self.count = row.report_count
        self.config: dict[str, tuple[float | None, str | None]] = {}  # key -> (num, text), from config lines

    def _pending(self, key: str) -> "_NewPoints":
        """The new points of a key this session may store (valid_key, MAX_SERIES checked)."""
        pending = self.new.get(key)
        if pending is None:
            if key not in self.series:
                s = SeriesRow(session_id=self.session_id, key=key, count=0, numeric=0, chunks=0, ordered=True)
                self.orm.add(s)
                self.series[key] = s
            pending = self.new[key] = _NewPoints()
        return pending

    def _acceptable(self, key: str) -> bool:
        return key in self.series or (spool.valid_key(key) and len(self.series) < spool.MAX_SERIES)

    def add_items(self, items: list) -> None:
        """Take a piece's lines in order: batch and configuration lines each as a whole, the
        lines between them as a plain piece where they are one, else one by one."""
        run: list = []
        for item in items:
            kind = item.get("k") if type(item) is dict else None
            if kind == spool.CONFIG:  # rare: keeps the metrics around it a plain piece
                self._add_run(run)
                run = []
                self.add_config(item)
            elif kind == spool.STOP_AND_GO:  # rarer still (a few per attempt)
                self._add_run(run)
                run = []
                self.add_stop_and_go(item)
            elif kind == spool.BATCH:
                self._add_run(run)
                run = []
                if not self.add_batch(item):
                    records = spool.batch_records(item)
                    if records is None:
                        self.noted.add("batch", "a journal batch line that is not well formed was skipped")
                    for record in records or ():
                        self.add_line(record)
            else:
                run.append(item)
        self._add_run(run)

    def _add_run(self, items: list) -> None:
        if items and not self.add_plain(items):
            for line in items:
                self.add_line(line)

    def add_batch(self, line: dict) -> bool:
        """Take a batch line whole, columns at once, or return False (and change nothing): it
        must be well formed with a step column, its values finite ints and floats, its keys ones
        this session may store. Anything else is expanded into records for add_line, whose
        checks and notes then apply as to any line (the result is the same either way)."""
        names, rows = line.get("c"), line.get("r")
        if type(names) is not list or type(rows) is not list or not rows or not 2 < len(names) <= _MAX_PLAIN_KEYS + 2 \
                or set(map(type, names)) != {str} or len(set(names)) != len(names) \
                or "walltime" not in names or "step" not in names or set(map(type, rows)) != {list} \
                or set(map(len, rows)) != {len(names)} or not set(map(type, chain.from_iterable(rows))) <= _NUMBERS:
            return False
        try:
            table = np.array(rows, dtype=np.float64)
        except OverflowError:  # an int beyond a float's range
            return False
        if not np.isfinite(table).all():
            return False
        at = {name: i for i, name in enumerate(names)}
        keys = [name for name in names if name != "walltime" and name != "step"]
        if not all(map(self._acceptable, keys)):
            return False
        steps, walls = table[:, at["step"]].copy(), table[:, at["walltime"]].copy()
        for key in keys:
            self._pending(key).add(steps, walls, table[:, at[key]].copy())
        self.count += len(rows)
        last, final = self.last, rows[-1]
        last["step"] = final[at["step"]]
        for key in keys:
            last[key] = final[at[key]]
        return True

    def add_plain(self, items: list) -> bool:
        """Take a piece of plain metrics lines whole, or return False (and change nothing)."""
        plain = _plain(items)
        if plain is None:
            return False
        steps, walls, given, vs, columns = plain
        if not all(map(self._acceptable, columns)):
            return False
        for key, (where, values) in columns.items():
            if where is None:
                self._pending(key).add(steps, walls, values)
            else:
                self._pending(key).add(steps[where], walls[where], values)
        self.count += len(items)
        last = self.last
        last["step"] = given[-1]
        for key, (where, _) in columns.items():
            last[key] = vs[-1 if where is None else where[-1]][key]
        flags = list(map(_S, items))
        if any(flags):
            for i, flag in enumerate(flags):
                if flag:
                    self.summary["step"] = given[i]
                    self.summary.update(vs[i])
        return True

    def add_config(self, line: dict) -> None:
        """A configuration line (nsml.config, argparse): its values, checked one by one, wait
        in self.config for finish(); a later value of a key wins."""
        values = line.get("v")
        if type(values) is not dict:
            self.noted.add("config", "a configuration line without values was skipped")
            return
        for key, value in values.items():
            try:
                params.check_key(key)
                num, text = params.encode(value)
            except (InvalidInput, TypeError, ValueError):
                self.noted.add("config-key", f"the configuration key {_shown(str(key))} was not stored: names are 1 to "
                                             f"{params.MAX_KEY} printable characters")
                continue
            if text is not None and len(text) > params.MAX_TEXT:
                self.noted.add(f"config:{key}", f"the configuration value of {_shown(key)} ({len(text)} characters) was not "
                                                f"stored: at most {params.MAX_TEXT} are kept")
                continue
            self.config.pop(key, None)
            self.config[key] = (num, text)

    def add_stop_and_go(self, line: dict) -> None:
        """A stop-and-go event (nsml.client.stopgo, spool.stop_and_go_record) onto the session
        row, in this ingest's transaction, so it counts exactly when the offset that covers it
        does: the script can be paused; it saved checkpoint NAME for a pause; that save failed.
        What the server then does about it is nsml.server.pausing's business."""
        try:
            event, detail = spool.stop_and_go_record(line)
        except spool.SpoolError as exc:
            self.noted.add("stop-and-go", f"a stop-and-go line of the journal was skipped: {exc}")
            return
        if event == spool.READY:
            self.row.pausable = True
        elif event == spool.PAUSED:
            self.row.pause_checkpoint, self.row.pause_error = detail, ""
        else:
            self.row.pause_error = detail or "the save function raised an error"

    def add_line(self, line) -> None:
        noted, count, new, series = self.noted, self.count, self.new, self.series
        if type(line) is not dict or line.get("k") != spool.METRICS:
            if type(line) is dict and line.get("k") == spool.CONFIG:
                self.add_config(line)
                return
            if type(line) is not dict or line.get("k") != spool.CHECKPOINT:  # the supervisor's
                noted.add("kind", "a journal line that is not a metrics or checkpoint record was skipped")
            return
        values = line.get("v")
        if type(values) is not dict:
            values = {}
        given = line.get("step")
        if type(given) is int or type(given) is float:  # the usual case, inlined
            try:
                step = float(given)
            except OverflowError:
                step = None
            if step is not None and step - step != 0.0:  # NaN or infinite: as if none
                noted.add("step", f"step={given!r} is not a finite number: the report was stored as "
                                  "one without a step")
                given = None
                step = float(count)
        else:
            step = _as_step(count if given is None else given)
        self.count = count + 1
        wall = line.get("w", 0.0)
        if type(wall) is not float or wall - wall != 0.0:
            wall = _walltime(wall)
        left_out = None  # keys not stored, or kept out of the summary
        for key, value in values.items():
            if type(value) is float and value - value == 0.0:  # finite (NaN/inf give NaN)
                num, js = value, None
            else:
                try:
                    num, js = _split_value(value)
                except (ValueError, OverflowError) as exc:
                    noted.value(key, value, given, exc)
                    left_out = (left_out or set()) | {key}
                    continue
                if js is not None and len(js) > spool.MAX_SUMMARY_VALUE:
                    left_out = (left_out or set()) | {key}
            try:
                pending = new[key]
            except KeyError:
                if not spool.valid_key(key):
                    noted.add("key", f"the metric key {_shown(key)} ({len(key)} characters) was not stored: "
                                     f"keys may be 1 to {spool.MAX_KEY} characters")
                    left_out = (left_out or set()) | {key}
                    continue
                if key not in series and len(series) >= spool.MAX_SERIES:
                    noted.add("series", f"the metric {_shown(key)} was not stored: a session may report at most "
                                        f"{spool.MAX_SERIES} different keys")
                    left_out = (left_out or set()) | {key}
                    continue
                pending = self._pending(key)
            pending.steps.append(step)
            pending.walls.append(wall)
            if js is None:
                pending.values.append(num)
            else:
                pending.extra[len(pending.values)] = js
                pending.values.append(_NAN)
        if left_out:
            values = {k: v for k, v in values.items() if k not in left_out}
        numbered = type(given) is int or type(given) is float  # what the summary may show as the step
        if numbered:
            self.last["step"] = given
        self.last.update(values)
        if line.get("s"):
            if numbered:
                self.summary["step"] = given
            self.summary.update(values)

    def finish(self) -> None:
        """Store the new points and the row's summary, last values and report count."""
        if self.new:
            self.orm.flush()  # ids for new series
            conn = self.orm.connection()
            for key, pending in self.new.items():
                _append_points(conn, self.series[key], pending)
        row = self.row
        row.summary, row.last_values = json.dumps(self.summary), json.dumps(self.last)
        row.report_count = self.count
        if self.config:
            self._store_config()

    def _store_config(self) -> None:
        """Merge the configuration into the session's parameters, in this ingest's transaction
        (so it is stored exactly when the offset that covers it is); past MAX_PARAMS in all, the
        new keys that do not fit are left out with a note."""
        P = SessionParamRow
        have = set(self.orm.scalars(select(P.key).where(P.session_id == self.session_id)))
        room = params.MAX_PARAMS - len(have)
        keep = {}
        for key, value in self.config.items():
            if key in have or room > 0:
                room -= key not in have
                keep[key] = value
            else:
                self.noted.add("config-many", f"configuration key {_shown(key)} and others were not stored: a session has "
                                              f"at most {params.MAX_PARAMS} parameters")
        if keep:
            self.orm.execute(delete(P).where(P.session_id == self.session_id, P.key.in_(list(keep))))
            self.orm.execute(insert(P), [dict(session_id=self.session_id, key=k, num=num, text=text)
                                         for k, (num, text) in keep.items()])


def _as_step(step: Any) -> float | None:
    try:
        step = float(step)
    except (TypeError, ValueError, OverflowError):
        return None
    return step if math.isfinite(step) else None


def _walltime(wall: Any) -> float:
    """A line's walltime as the REAL column takes it: a finite number, else 0 (as if none)."""
    if type(wall) is int:
        try:
            wall = float(wall)
        except OverflowError:
            return 0.0
    return wall if type(wall) is float and math.isfinite(wall) else 0.0
