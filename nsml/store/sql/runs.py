"""The runs table: sessions as rows, chosen parameters and metric summaries as columns.

A metric column reads the summary the ingest keeps on each series (series.last_value,
min_value, max_value), never a point; a parameter column reads session_params. Sorting and
paging happen in SQL: one query joins only the sort column's table (one row per session at
most: both joins are on a unique key), orders every visible session by it and keeps the page;
three more fetch the page's other columns and tags by primary key. So a page of 50 out of 10,000
sessions builds 50 rows in Python, whichever column it is sorted by and however deep the page.

Who sees which sessions is the listing's rule (sessions.in_scope, as search_sessions applies
it): nothing here decides visibility.
"""

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, delete, func, select, update

from nsml.core import naming
from nsml.core import params as p
from nsml.core import tags as t
from nsml.core.entities import Session
from nsml.core.errors import InvalidInput, NotFound
from nsml.core.params import Column, RunRow
from nsml.core.policy import SessionScope

from . import filters
from .models import SeriesRow, SessionParamRow, SessionRow, SessionTagRow
from .sessions import in_scope, to_session

MAX_ROWS = 1000  # rows of one page
_AGG_COLUMNS = {"last": SeriesRow.last_value, "min": SeriesRow.min_value, "max": SeriesRow.max_value}
_SESSION_COLUMNS = {
    "id": (SessionRow.id,), "name": (SessionRow.owner, SessionRow.dataset, SessionRow.number),
    "status": (SessionRow.status,), "created": (SessionRow.created,), "started": (SessionRow.started,),
    "ended": (SessionRow.ended,),
}


class RunsMixin:
    def _query_condition(self, tree):
        """A runs query's WHERE clause, its bare names resolved against the keys the store has."""
        with self._read() as orm:
            known = filters.key_kinds(orm, tree)
        return filters.condition(tree, known)

    # -- parameters -------------------------------------------------------------------------
    def set_params(self, session_id: int, params: Mapping[str, Any]) -> dict[str, Any]:
        """Merge `params` into the session's (a key given replaces its value); returns them all.
        Out of bounds (nsml.core.params: name length, value size, how many) is InvalidInput,
        and nothing is changed."""
        checked = p.check_params(params)
        P = SessionParamRow
        with self._write() as orm:
            if orm.get(SessionRow, session_id, with_for_update=True) is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            have = set(orm.scalars(select(P.key).where(P.session_id == session_id)))
            if len(have | set(checked)) > p.MAX_PARAMS:
                raise InvalidInput(f"A session has at most {p.MAX_PARAMS} parameters; it has {len(have)}, "
                                   f"and {len(set(checked) - have)} new ones were given.")
            if checked:
                orm.execute(delete(P).where(P.session_id == session_id, P.key.in_(list(checked))))
                orm.add_all(P(session_id=session_id, key=k, num=num, text=text) for k, (num, text) in checked.items())
        return self.session_params([session_id])[session_id]

    def session_params(self, session_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """{session id: {key: value}} by key, for every id asked for ({} for one without any)."""
        ids = list(session_ids)
        out: dict[int, dict[str, Any]] = {i: {} for i in ids}
        P = SessionParamRow
        with self._read() as orm:
            for i in range(0, len(ids), 500):
                rows = orm.execute(select(P.session_id, P.key, P.num, P.text)
                                   .where(P.session_id.in_(ids[i:i + 500])).order_by(P.session_id, P.key))
                for session_id, key, num, text in rows:
                    out[session_id][key] = p.decode(num, text)
        return out

    # -- tags and notes ---------------------------------------------------------------------
    def tag_session(self, session_id: int, add: Iterable[str] = (), remove: Iterable[str] = ()) -> list[str]:
        """Add and remove tags (nsml.core.tags; removing one it lacks is no error); returns the
        session's tags, sorted. More than tags.MAX_TAGS is InvalidInput, nothing changed."""
        add, remove = [t.check_tag(x) for x in add], [t.check_tag(x) for x in remove]
        T = SessionTagRow
        with self._write() as orm:
            if orm.get(SessionRow, session_id, with_for_update=True) is None:
                raise NotFound(f"Session #{session_id} does not exist.")
            have = set(orm.scalars(select(T.tag).where(T.session_id == session_id)))
            after = (have | set(add)) - set(remove)
            if len(after) > t.MAX_TAGS:
                raise InvalidInput(f"A session has at most {t.MAX_TAGS} tags.")
            if have - after:
                orm.execute(delete(T).where(T.session_id == session_id, T.tag.in_(sorted(have - after))))
            orm.add_all(T(session_id=session_id, tag=x) for x in sorted(after - have))
        return sorted(after)

    def session_tags(self, session_ids: Iterable[int]) -> dict[int, list[str]]:
        """{session id: its tags, sorted} for every id asked for."""
        with self._read() as orm:
            return self._tags(orm, list(session_ids))

    @staticmethod
    def _tags(orm, ids: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {i: [] for i in ids}
        T = SessionTagRow
        for i in range(0, len(ids), 500):
            for session_id, tag in orm.execute(select(T.session_id, T.tag).where(T.session_id.in_(ids[i:i + 500]))
                                               .order_by(T.session_id, T.tag)):
                out[session_id].append(tag)
        return out

    def set_note(self, session_id: int, note: str) -> None:
        """The session's markdown note (tags.MAX_NOTE characters at most), replacing the last."""
        note = t.check_note(note)
        with self._write() as orm:
            if orm.execute(update(SessionRow).where(SessionRow.id == session_id).values(note=note)).rowcount == 0:
                raise NotFound(f"Session #{session_id} does not exist.")

    def session_note(self, session_id: int) -> str:
        with self._read() as orm:
            note = orm.scalar(select(SessionRow.note).where(SessionRow.id == session_id))
        if note is None:
            raise NotFound(f"Session #{session_id} does not exist.")
        return note

    # -- the table --------------------------------------------------------------------------
    def runs_table(
        self, params: Sequence[str] = (), metrics: Sequence[tuple[str, str]] = (), sort: Column | None = None,
        order: str = "desc", limit: int = 50, offset: int = 0, scope: SessionScope | None = None,
        where_tree=None,
    ) -> tuple[int, list[RunRow]]:
        """(how many sessions `scope` may read and the query `where_tree` selects, the page of them
        sorted by `sort`). `where_tree` is a tree of nsml.core.query (None: all). Sessions `rm -s`
        took out of listings are left out. Columns: parameter keys, (metric key, agg) with agg
        last/min/max; sort a Column (default: created), nulls last in both orders, ties by id
        in the same order. At most MAX_ROWS rows; a bad column is InvalidInput."""
        param_keys = list(dict.fromkeys(Column("param", k).key for k in params))
        metric_cols = list(dict.fromkeys(Column("metric", k, a) for k, a in metrics))
        if len(param_keys) > p.MAX_COLUMNS or len(metric_cols) > p.MAX_COLUMNS:
            raise InvalidInput(f"A runs table has at most {p.MAX_COLUMNS} parameter and {p.MAX_COLUMNS} metric columns.")
        sort = sort or Column("session", "created")
        desc = p.check_order(order)
        if not 0 <= limit <= MAX_ROWS or offset < 0:
            raise InvalidInput(f"A page is 0 to {MAX_ROWS} rows from an offset of 0 or more (not {limit} from {offset}).")
        where = [SessionRow.removed.is_(None), *in_scope(scope)]
        if where_tree is not None:
            where.append(self._query_condition(where_tree))
        page = self._runs_page(where, sort, desc).offset(offset).limit(limit)
        with self._read() as orm:
            total = orm.scalar(select(func.count()).select_from(SessionRow).where(*where))
            found = orm.execute(page).all() if limit else []
            ids = [r.id for r in found]
            values = self._param_values(orm, ids, param_keys)
            summaries = self._metric_values(orm, ids, sorted({c.key for c in metric_cols}))
            tags = self._tags(orm, ids) if ids else {}
        rows = []
        for r in found:
            have, series = values.get(r.id, {}), summaries.get(r.id, {})
            out: dict[str, dict[str, float | None]] = {}
            for c in metric_cols:
                out.setdefault(c.key, {})[c.agg] = series.get(c.key, {}).get(c.agg)
            rows.append(RunRow(r.id, naming.session_name(r.owner, r.dataset, r.number), r.status, r.created,
                               {k: have.get(k) for k in param_keys}, out, tags[r.id]))
        return total, rows

    @staticmethod
    def _runs_page(where: list, sort: Column, desc: bool):
        """Every session `where` selects, ordered by `sort`: the sort column's table joined on
        its unique key, so each session is one row whether it has the value or not."""
        S = SessionRow
        query = select(S.id, S.owner, S.dataset, S.number, S.status, S.created).where(*where)
        if sort.kind == "session":
            keys = _SESSION_COLUMNS[sort.key]
        elif sort.kind == "param":
            P = SessionParamRow
            query = query.outerjoin(P, and_(P.session_id == S.id, P.key == sort.key))
            keys = (P.num, P.text)  # numbers by value, then texts (a column of both: numbers first)
        else:
            query = query.outerjoin(SeriesRow, and_(SeriesRow.session_id == S.id, SeriesRow.key == sort.key))
            keys = (_AGG_COLUMNS[sort.agg],)
        way = (lambda c: c.desc()) if desc else (lambda c: c.asc())
        return query.order_by(*(way(k).nulls_last() for k in keys), way(S.id))

    @staticmethod
    def _param_values(orm, ids: list[int], keys: list[str]) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        if not ids or not keys:
            return out
        P = SessionParamRow
        for session_id, key, num, text in orm.execute(
                select(P.session_id, P.key, P.num, P.text).where(P.session_id.in_(ids), P.key.in_(keys))):
            out.setdefault(session_id, {})[key] = p.decode(num, text)
        return out

    @staticmethod
    def _metric_values(orm, ids: list[int], keys: list[str]) -> dict[int, dict[str, dict[str, float | None]]]:
        out: dict[int, dict[str, dict[str, float | None]]] = {}
        if not ids or not keys:
            return out
        s = SeriesRow
        for session_id, key, last, low, high in orm.execute(
                select(s.session_id, s.key, s.last_value, s.min_value, s.max_value)
                .where(s.session_id.in_(ids), s.key.in_(keys))):
            out.setdefault(session_id, {})[key] = {"last": last, "min": low, "max": high}
        return out

    # -- the web table's column picker and row details -----------------------------------------
    def runs_keys(self, scope: SessionScope | None = None, where_tree=None, limit: int = 500,
                  recent: int = 50) -> dict[str, Any]:
        """What the runs table can show for the sessions `scope` may read and `where_tree`
        selects (`rm -s` ones left out): {"params": [(key, sessions having it, distinct values
        as written)], "metrics": [(key, sessions having it)], "summary": [summary metric keys of
        the `recent` newest sessions, first seen first]}. Keys by how many sessions have them,
        then by name; at most `limit` of each."""
        S, P = SessionRow, SessionParamRow
        where = [S.removed.is_(None), *in_scope(scope)]
        if where_tree is not None:
            where.append(self._query_condition(where_tree))
        limit = max(0, min(int(limit), 1000))
        count = func.count()
        params = (select(P.key, count, func.count(P.text.distinct())).join(S, S.id == P.session_id).where(*where)
                  .group_by(P.key).order_by(count.desc(), P.key).limit(limit))
        metrics = (select(SeriesRow.key, count).join(S, S.id == SeriesRow.session_id).where(*where)
                   .group_by(SeriesRow.key).order_by(count.desc(), SeriesRow.key).limit(limit))
        newest = select(S.summary).where(*where).order_by(S.created.desc(), S.id.desc()).limit(max(0, recent))
        with self._read() as orm:
            out = {"params": [tuple(r) for r in orm.execute(params)], "metrics": [tuple(r) for r in orm.execute(metrics)]}
            summary: dict[str, None] = {}
            for (text,) in orm.execute(newest):
                try:
                    keys = json.loads(text or "{}")
                except ValueError:
                    continue
                if isinstance(keys, dict):
                    summary.update(dict.fromkeys(k for k in keys if isinstance(k, str) and k != "step"))
        out["summary"] = list(summary)[:limit]
        return out

    def sessions_by_ids(self, session_ids: Iterable[int]) -> dict[int, Session]:
        """{id: Session} of the ids that exist (the runs table's row details)."""
        ids = list(dict.fromkeys(session_ids))
        out = {}
        with self._read() as orm:
            for i in range(0, len(ids), 500):
                for row in orm.scalars(select(SessionRow).where(SessionRow.id.in_(ids[i:i + 500]))):
                    out[row.id] = to_session(row)
        return out
