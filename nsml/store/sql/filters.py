"""A runs query (nsml.core.query's tree) as one SQL condition on sessions.

Every value goes into the statement as a bound parameter, never into its text, so a query can
select sessions and nothing else. Parameters, metrics and tags are EXISTS subqueries on their
tables' unique keys (session_params (session, key), series (session, key), session_tags
(session, tag)), so a condition costs an index lookup per session whatever else it says. Each
subquery reads its own alias of its table: the query it is put in may join the same table
(the runs table sorted by a metric joins series), and SQL would otherwise correlate the two.

Meanings (docs/web.md, "Queries"):
- a parameter or metric comparison holds for sessions that have that parameter or metric and
  whose value satisfies it (`!=` too: a session without `lr` is not `lr != 0.1`); numbers compare
  as numbers, texts as texts, and `~` is a case-insensitive substring of the text as written;
- a bare name is the session's parameter where it has one, else its metric's last value; where
  the store has the key only as a parameter (or only as a metric), the other branch, which
  could select nothing, is left out (`known`): one EXISTS instead of three per session;
- `kind:train` is a plain run, `kind:submit` either kind of submit; `kind:automl` a trial of a
  study (none exist until AutoML does);
- a bare word is found, case-insensitively, in the name or the memo.
"""

from sqlalchemy import String, and_, cast, exists, false, not_, or_, select, true
from sqlalchemy.orm import aliased

from nsml.core import query as q

from .models import SeriesRow, SessionParamRow, SessionRow, SessionTagRow

_KINDS = {"train": ("normal",), "fork": ("fork",), "submit": ("submit", "submit_test"), "infer": ("infer",),
          "automl": ("automl",)}
_AGG = {"last": "last_value", "min": "min_value", "max": "max_value"}
_COMPARE = {"<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__", "=": "__eq__", "!=": "__ne__"}


def like(text: str) -> str:
    """A LIKE pattern (escape character backslash) for `text` anywhere in a value."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def session_name():
    return SessionRow.owner + "/" + SessionRow.dataset + "/" + cast(SessionRow.number, String)


def condition(tree, known: dict[str, tuple[bool, bool]] | None = None):
    """The WHERE clause (on SessionRow) that selects the sessions `tree` matches; true for None.
    `known`: for bare names, whether any session has the key as a parameter, as a metric
    (key_kinds); absent, both are assumed."""
    if tree is None:
        return true()
    if isinstance(tree, q.And):
        return and_(*(condition(part, known) for part in tree.parts))
    if isinstance(tree, q.Or):
        return or_(*(condition(part, known) for part in tree.parts))
    if isinstance(tree, q.Not):
        return not_(condition(tree.part, known))
    if isinstance(tree, q.Text):
        pattern = like(tree.text)
        return or_(session_name().ilike(pattern, escape="\\"), SessionRow.memo.ilike(pattern, escape="\\"))
    if isinstance(tree, q.Compare):
        return _compare(tree, known or {})
    raise TypeError(f"not a query tree: {tree!r}")


def bare_keys(tree) -> set[str]:
    """The bare names (q.Key) a query compares."""
    if isinstance(tree, (q.And, q.Or)):
        return set().union(*(bare_keys(part) for part in tree.parts))
    if isinstance(tree, q.Not):
        return bare_keys(tree.part)
    if isinstance(tree, q.Compare) and isinstance(tree.target, q.Key):
        return {tree.target.key}
    return set()


def key_kinds(orm, tree) -> dict[str, tuple[bool, bool]]:
    """For each bare name of the query: (some session has it as a parameter, as a metric); one
    index lookup a key in each table (ix_session_params_key_num, ix_series_key)."""
    out = {}
    for key in bare_keys(tree):
        is_param = orm.scalar(select(exists().where(SessionParamRow.key == key)))
        is_metric = orm.scalar(select(exists().where(SeriesRow.key == key)))
        out[key] = (bool(is_param), bool(is_metric))
    return out


def _text_test(column, op: str, value: str):
    if op == "~":
        return column.ilike(like(value), escape="\\")
    if op == "!~":
        return not_(column.ilike(like(value), escape="\\"))
    if op in ("=", "!="):
        return getattr(column, _COMPARE[op])(value)
    return false()  # an order on texts: the parser allows it only for numbers


def _compare(node: q.Compare, known: dict[str, tuple[bool, bool]]):
    target, op, value = node.target, node.op, node.value
    if isinstance(target, q.Field):
        return _field(target.name, op, value)
    if isinstance(target, q.Param):
        return _param(target.key, op, value)
    if isinstance(target, q.Metric):
        return _metric(target.key, target.agg, op, value)
    is_param, is_metric = known.get(target.key, (True, True))
    if not is_metric:
        return _param(target.key, op, value)
    if not is_param:
        return _metric(target.key, "last", op, value)
    P = aliased(SessionParamRow)
    has_param = exists().where(P.session_id == SessionRow.id, P.key == target.key)
    return or_(_param(target.key, op, value), and_(not_(has_param), _metric(target.key, "last", op, value)))


def _field(name: str, op: str, value: str):
    if name == "kind":
        if op not in ("=", "!="):
            return _text_test(SessionRow.kind, op, value)
        kinds = _KINDS.get(value, ())
        found = SessionRow.kind.in_(kinds) if kinds else false()
        return found if op == "=" else not_(found)
    if name == "tag":
        Tag = aliased(SessionTagRow)
        if op in ("=", "!="):
            found = exists().where(Tag.session_id == SessionRow.id, Tag.tag == value)
            return found if op == "=" else not_(found)
        found = exists().where(Tag.session_id == SessionRow.id,
                               Tag.tag.ilike(like(value), escape="\\"))
        return found if op == "~" else not_(found)
    if name == "name":
        if op in ("=", "!="):
            owner, _, rest = value.partition("/")
            dataset, _, number = rest.partition("/")
            same = and_(SessionRow.owner == owner, SessionRow.dataset == dataset,
                        SessionRow.number == int(number)) if number.isdigit() else false()
            return same if op == "=" else not_(same)
        return _text_test(session_name(), op, value)
    column = {"status": SessionRow.status, "dataset": SessionRow.dataset, "user": SessionRow.owner,
              "memo": SessionRow.memo}[name]
    return _text_test(column, op, value)


def _param(key: str, op: str, value):
    P = aliased(SessionParamRow)
    if isinstance(value, (int, float)):
        if op in ("~", "!~"):
            test = _text_test(P.text, op, str(value))
        else:
            test = getattr(P.num, _COMPARE[op])(value)
    else:
        test = _text_test(P.text, op, value)
    return exists().where(P.session_id == SessionRow.id, P.key == key, test)


def _metric(key: str, agg: str, op: str, value):
    if not isinstance(value, (int, float)) or op in ("~", "!~"):
        return false()  # metric values are numbers
    S = aliased(SeriesRow)
    column = getattr(S, _AGG[agg])
    return exists().where(S.session_id == SessionRow.id, S.key == key, getattr(column, _COMPARE[op])(value))


def matching(tree):
    """SELECT id FROM sessions WHERE the query holds: for tests and counting."""
    return select(SessionRow.id).where(condition(tree))
