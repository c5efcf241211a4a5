"""The runs query language: one small grammar for `nsml ps -q '…'` and the web's search box.

    lr < 0.01 and val/accuracy >= 0.95
    status:running dataset:digits            (terms side by side: and)
    kind:submit or tag:baseline
    not user:alice and memo ~ "wide"
    max(val/acc) > 0.9   min(loss) < 0.1    (a metric's last value by default)
    params.lr = 0.01     metrics.loss < 1   (MLflow's prefixes, to say which one a name is)
    `acc@vector:top1` > 0.5                  (backticks quote a name with odd characters)
    lr=0.01                                  (the dashboard's own chip format)
    resnet                                   (a bare word: text search of name and memo)

Grammar (a real parser: tokens, then recursive descent; never eval):

    query   := [or] EOF
    or      := and ('or' and)*
    and     := unary (['and'] unary)*
    unary   := 'not' unary | '(' or ')' | term
    term    := target OP value | FIELD ':' value | word | string
    target  := NAME | AGG '(' NAME ')' | ('params'|'param'|'metrics'|'metric') '.' NAME
    OP      := '<' | '<=' | '>' | '>=' | '=' | '==' | '!=' | '~' | '!~'
    value   := number | string | word

A bare name is a parameter where the session has one, else the last value of its metric (the
store resolves it; docs/web.md). `~` is a case-insensitive substring match. The parse is pure:
it gives a tree (the dataclasses below) that the store compiles to SQL with bound parameters,
so no value is ever spliced into SQL text. Every error is a QueryError naming the position of
the token at fault.
"""

import math
import re
from dataclasses import dataclass

from nsml.core.errors import InvalidInput
from nsml.core.states import Status

MAX_QUERY = 2000  # characters
MAX_TERMS = 64
MAX_DEPTH = 32

FIELDS = ("status", "dataset", "user", "kind", "tag", "memo", "name")
KINDS = ("train", "fork", "submit", "infer", "automl")
AGGS = ("last", "min", "max")
OPS = ("<", "<=", ">", ">=", "=", "!=", "~", "!~")
_PREFIXES = {"params": "param", "param": "param", "metrics": "metric", "metric": "metric"}
_KEYWORDS = ("and", "or", "not")


class QueryError(InvalidInput):
    """A query that does not parse: the message, and where (a 0-based character offset)."""

    def __init__(self, message: str, query: str, position: int):
        self.query, self.position, self.reason = query, position, message
        super().__init__(f"{message} (at character {position + 1}):\n  {query}\n  {' ' * position}^")


# -- the tree ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A session's own attribute: one of FIELDS."""
    name: str


@dataclass(frozen=True)
class Param:
    key: str


@dataclass(frozen=True)
class Metric:
    key: str
    agg: str = "last"


@dataclass(frozen=True)
class Key:
    """A bare name: the parameter, or else the metric's last value."""
    key: str


@dataclass(frozen=True)
class Compare:
    target: Field | Param | Metric | Key
    op: str  # one of OPS ('==' is read as '=')
    value: float | str  # a number (int or float) or a text


@dataclass(frozen=True)
class Text:
    """A bare word or string: found in the session's name or memo (case-insensitive)."""
    text: str


@dataclass(frozen=True)
class And:
    parts: tuple


@dataclass(frozen=True)
class Or:
    parts: tuple


@dataclass(frozen=True)
class Not:
    part: object


# -- tokens ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
    kind: str  # num, str, name, qname (backticks), op, ':', '(', ')', '.', end
    text: str
    value: object
    at: int


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w./@-])")
_NAME = re.compile(r"[A-Za-z_][\w/@.\-]*")
_OP = re.compile(r"<=|>=|==|!=|!~|<|>|=|~")


def _tokens(query: str) -> list[_Token]:
    out, i, n = [], 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "():":
            out.append(_Token(ch, ch, ch, i))
            i += 1
            continue
        if ch in "\"'`":
            end, text = _quoted(query, i)
            out.append(_Token("qname" if ch == "`" else "str", query[i:end], text, i))
            i = end
            continue
        m = _OP.match(query, i)
        if m:
            op = "=" if m.group() == "==" else m.group()
            out.append(_Token("op", m.group(), op, i))
            i = m.end()
            continue
        m = _NUMBER.match(query, i)
        if m:
            number = float(m.group())
            if not math.isfinite(number):
                raise QueryError(f"{m.group()} is not a finite number", query, i)
            as_int = re.fullmatch(r"[-+]?\d+", m.group())
            out.append(_Token("num", m.group(), int(m.group()) if as_int else number, i))
            i = m.end()
            continue
        m = _NAME.match(query, i)
        if m:
            out.append(_Token("name", m.group(), m.group(), i))
            i = m.end()
            continue
        raise QueryError(f"unexpected character {ch!r}", query, i)
    out.append(_Token("end", "", None, n))
    return out


def _quoted(query: str, start: int) -> tuple[int, str]:
    """(end, text) of the quoted token at `start`; backslash escapes the quote and itself."""
    quote, i, parts = query[start], start + 1, []
    while i < len(query):
        ch = query[i]
        if ch == "\\" and i + 1 < len(query) and query[i + 1] in (quote, "\\"):
            parts.append(query[i + 1])
            i += 2
            continue
        if ch == quote:
            return i + 1, "".join(parts)
        parts.append(ch)
        i += 1
    what = "name" if quote == "`" else "string"
    raise QueryError(f"this {what} is not closed: a {quote} is missing", query, start)


# -- the parser --------------------------------------------------------------------------------
class _Parser:
    def __init__(self, query: str):
        self.query = query
        self.toks = _tokens(query)
        self.i = 0
        self.terms = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> _Token:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def error(self, message: str, tok: _Token) -> QueryError:
        return QueryError(message, self.query, tok.at)

    def keyword(self, tok: _Token, word: str) -> bool:
        return tok.kind == "name" and tok.text.lower() == word

    def parse(self):
        if self.peek().kind == "end":
            return None
        tree = self.or_(0)
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == ")":
                raise self.error("this ')' has no '(' before it", tok)
            raise self.error(f"unexpected {tok.text!r}", tok)
        return tree

    def or_(self, depth: int):
        parts = [self.and_(depth)]
        while self.keyword(self.peek(), "or"):
            self.take()
            parts.append(self.and_(depth))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def and_(self, depth: int):
        parts = [self.unary(depth)]
        while True:
            tok = self.peek()
            if self.keyword(tok, "and"):
                self.take()
            elif tok.kind in ("end", ")") or self.keyword(tok, "or"):
                break
            parts.append(self.unary(depth))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def unary(self, depth: int):
        if depth > MAX_DEPTH:
            raise self.error(f"the query is nested more than {MAX_DEPTH} deep", self.peek())
        tok = self.peek()
        if self.keyword(tok, "not"):
            self.take()
            return Not(self.unary(depth + 1))
        if tok.kind == "(":
            self.take()
            if self.peek().kind == ")":
                raise self.error("nothing between '(' and ')'", self.peek())
            inner = self.or_(depth + 1)
            close = self.peek()
            if close.kind != ")":
                raise self.error("a ')' is missing here", close)
            self.take()
            return inner
        return self.term()

    def term(self):
        self.terms += 1
        tok = self.peek()
        if self.terms > MAX_TERMS:
            raise self.error(f"a query has at most {MAX_TERMS} terms", tok)
        if tok.kind == "end":
            raise self.error("the query ends where a term was expected", tok)
        if tok.kind in ("op", ":", ")") or (tok.kind == "name" and tok.text.lower() in _KEYWORDS):
            raise self.error(f"{tok.text!r} here needs a name before it (e.g. lr < 0.01)", tok)
        if tok.kind == "num":
            self.take()
            if self.peek().kind in ("op", ":"):
                raise self.error("a comparison starts with a name, not a number", tok)
            return Text(tok.text)
        if tok.kind == "str":
            self.take()
            if self.peek().kind in ("op", ":"):
                raise self.error("a quoted string is a value; quote a name with backticks: `name`", tok)
            return Text(tok.value)
        target, at = self.target()
        nxt = self.peek()
        if nxt.kind == ":":
            if not isinstance(target, Key) or target.key.lower() not in FIELDS:
                raise self.error(f"'{at.text}:' is not a field; fields are {', '.join(FIELDS)} "
                                 "(compare a parameter or metric with =, <, >)", at)
            self.take()
            return self.field_value(Field(target.key.lower()), ":", self.value(nxt))
        if nxt.kind == "op":
            self.take()
            if isinstance(target, Key) and target.key.lower() in FIELDS:
                target = Field(target.key.lower())
            value = self.value(nxt)
            if isinstance(target, Field):
                return self.field_value(target, nxt.value, value)
            if nxt.value in ("~", "!~") and not isinstance(value.value, str):
                raise self.error(f"'{nxt.text}' matches text: give it a word or a quoted string", value)
            if nxt.value in ("<", "<=", ">", ">=") and not isinstance(value.value, (int, float)):
                raise self.error(f"'{nxt.text}' compares numbers: {value.text!r} is not one", value)
            return Compare(target, nxt.value, value.value)
        if isinstance(target, Key) and at.kind == "name":
            return Text(target.key)
        raise self.error(f"{at.text!r} needs a comparison after it (e.g. {at.text} > 0.5)", nxt)

    def target(self):
        tok = self.take()
        if tok.kind == "qname":
            if not tok.value:
                raise self.error("an empty name", tok)
            return Key(tok.value), tok
        if tok.kind != "name":
            raise self.error(f"{tok.text!r} is not a name", tok)
        low = tok.text.lower()
        if low in AGGS and self.peek().kind == "(":
            self.take()
            inner = self.take()
            if inner.kind not in ("name", "qname") or (inner.kind == "name" and inner.text.lower() in _KEYWORDS):
                raise self.error(f"{low}( takes a metric name", inner)
            if self.peek().kind != ")":
                raise self.error(f"a ')' is missing after {low}({inner.text}", self.peek())
            self.take()
            return Metric(inner.value, low), tok
        head, dot, rest = tok.text.partition(".")
        if dot and head.lower() in _PREFIXES:
            if not rest:
                raise self.error(f"a name is missing after {head}.", tok)
            return (Param(rest) if _PREFIXES[head.lower()] == "param" else Metric(rest)), tok
        return Key(tok.text), tok

    def value(self, after: _Token) -> _Token:
        tok = self.take()
        if tok.kind in ("num", "str", "name", "qname"):
            if tok.kind == "name" and tok.text.lower() in _KEYWORDS:
                raise self.error(f"a value is missing after '{after.text}' ('{tok.text}' is a keyword; quote it)", tok)
            return tok
        raise self.error(f"a value is missing after '{after.text}'", tok)

    def field_value(self, field: Field, op: str, tok: _Token):
        value = tok.value if tok.kind != "num" else tok.text
        if op == ":":
            op = "~" if field.name == "memo" else "="
        if op in ("<", "<=", ">", ">="):
            raise self.error(f"{field.name} is not a number: compare it with =, != or ~", tok)
        text = str(value)
        if field.name == "status" and op in ("=", "!=") and text.lower() not in {s.value for s in Status}:
            raise self.error(f"{text!r} is not a status; statuses are {', '.join(s.value for s in Status)}", tok)
        if field.name == "kind" and op in ("=", "!=") and text.lower() not in KINDS:
            raise self.error(f"{text!r} is not a kind; kinds are {', '.join(KINDS)}", tok)
        if field.name in ("status", "kind"):
            text = text.lower()
        return Compare(field, op, text)


def parse(query: str):
    """The tree of a query (None for an empty one). Raises QueryError."""
    if len(query) > MAX_QUERY:
        raise QueryError(f"a query is at most {MAX_QUERY} characters", query[:60] + "…", 60)
    return _Parser(query).parse()
