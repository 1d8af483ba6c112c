"""The engine's `search=` query language, as far as the lab's collections go.

The engine parses the Admin Portal language (searchbackend/SyntaxChecker): terms `field op value`
joined by `and` / `or` (`and` binds tighter), then optional `sortby field [asc|desc]` and
`page N` clauses. Values may be quoted and may hold `*` wildcards; `=`/`!=` match patterns,
`<`, `>`, `<=`, `>=` compare numbers and dates. A field or clause the lab does not know is refused
with a fault, never silently dropped: a dropped filter is a silently wrong answer.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from reconciler_lab.errors import EngineFault

T = TypeVar("T")
Getter = Callable[[Any], "str | int | float | None"]

# The engine pages with `max` as the page size, or SearchResultsLimit (100) without it.
DEFAULT_PAGE_SIZE = 100

_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|<=|>=|!=|=|<|>|[^\s"<>=!]+)')
_COMPARE = ("<", ">", "<=", ">=")


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str


@dataclass(frozen=True)
class Query:
    groups: tuple[tuple[Term, ...], ...]      # or of ands
    sort_by: str | None = None
    descending: bool = False
    page: int | None = None


def _fault(detail: str) -> EngineFault:
    # What the engine answers for a query its SyntaxChecker rejects.
    return EngineFault(400, f"[Cannot search. Search query failed: {detail}]")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or not m.group(1):
            raise _fault(f"cannot parse {text[pos:]!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse(text: str | None) -> Query:
    if not text or not text.strip():
        return Query(groups=())
    tokens = _tokens(text)
    groups: list[tuple[Term, ...]] = []
    current: list[Term] = []
    sort_by: str | None = None
    descending = False
    page: int | None = None
    i = 0
    while i < len(tokens):
        word = tokens[i].lower()
        if word == "sortby":
            if i + 1 >= len(tokens):
                raise _fault("sortby needs a field")
            sort_by = tokens[i + 1].lower()
            i += 2
            if i < len(tokens) and tokens[i].lower() in ("asc", "desc"):
                descending = tokens[i].lower() == "desc"
                i += 1
            continue
        if word == "page":
            if i + 1 >= len(tokens) or not tokens[i + 1].isdigit() or int(tokens[i + 1]) < 1:
                raise _fault("page needs a positive number")
            page = int(tokens[i + 1])
            i += 2
            continue
        if word in ("and", "or"):
            if not current:
                raise _fault(f"{word!r} without a term before it")
            if word == "or":
                groups.append(tuple(current))
                current = []
            i += 1
            continue
        if sort_by is not None or page is not None:
            raise _fault("terms must come before sortby and page")
        if i + 2 >= len(tokens) or tokens[i + 1] not in ("=", "!=", *_COMPARE):
            raise _fault(f"cannot parse {' '.join(tokens[i:i + 3])!r}")
        value = tokens[i + 2]
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = value[1:-1].replace('\\"', '"')
        current.append(Term(tokens[i].lower(), tokens[i + 1], value))
        i += 3
    if current:
        groups.append(tuple(current))
    return Query(tuple(groups), sort_by, descending, page)


def _as_number(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except (TypeError, ValueError):
        return None


def parse_time(value: str) -> float:
    """A time operand: ISO 8601 (the SDK's own format) or the Admin Portal's `MM/dd/yyyy[ HH:mm[:ss]]`."""
    text = value.strip()
    parsed: dt.datetime | None = None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%b %d, %Y %H:%M:%S",
                    "%b %d, %Y"):
            try:
                parsed = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        raise _fault(f"cannot read {value!r} as a date")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.timestamp()


@dataclass(frozen=True)
class Field:
    """How one search field reads an entity: `get` returns the value to match; `kind` is
    `text` (patterns), `number` or `time` (comparisons allowed)."""

    get: Getter
    kind: str = "text"
    # For fields over many values (a template's VMs): any of them matching the pattern matches.
    many: Callable[[Any], Iterable[str]] | None = None


def _check_term(term: Term, fields: dict[str, Field]) -> None:
    if term.field not in fields:
        raise _fault(f"unknown field {term.field!r}")
    if term.op in _COMPARE and fields[term.field].kind == "text":
        raise _fault(f"{term.field!r} cannot be compared with {term.op}")
    if fields[term.field].kind == "number" and _as_number(term.value) is None \
            and "*" not in term.value:
        raise _fault(f"{term.value!r} is not a number")


def _term_matches(term: Term, field: Field, obj: Any, case_sensitive: bool) -> bool:
    raw = field.get(obj)
    if field.kind == "time":
        wanted = parse_time(term.value)
        have = _as_number(raw)
        if have is None:
            return False
        return _compare(have, term.op, wanted)
    if field.kind == "number" and term.op in _COMPARE:
        have, wanted_n = _as_number(raw), _as_number(term.value)
        return have is not None and wanted_n is not None and _compare(have, term.op, wanted_n)
    values = list(field.many(obj)) if field.many is not None else ["" if raw is None else str(raw)]
    pattern = term.value if case_sensitive else term.value.lower()
    hit = any(fnmatch.fnmatchcase(v if case_sensitive else v.lower(), pattern) for v in values)
    return hit if term.op == "=" else not hit


def _compare(have: float, op: str, wanted: float) -> bool:
    return {"=": have == wanted, "!=": have != wanted, "<": have < wanted, ">": have > wanted,
            "<=": have <= wanted, ">=": have >= wanted}[op]


def compile_query(text: str | None, fields: dict[str, Field], case_sensitive: bool = True
                  ) -> tuple[Query, Callable[[Any], bool]]:
    query = parse(text)
    for group in query.groups:
        for term in group:
            _check_term(term, fields)
    if query.sort_by is not None and query.sort_by not in fields:
        raise _fault(f"cannot sort by {query.sort_by!r}")

    def check(obj: Any) -> bool:
        if not query.groups:
            return True
        return any(all(_term_matches(t, fields[t.field], obj, case_sensitive) for t in group)
                   for group in query.groups)
    return query, check


def run(items: Iterable[T], text: str | None, fields: dict[str, Field], *,
        case_sensitive: bool = True, limit: int | None = None) -> list[T]:
    """Filter, sort and page `items` as the engine's search does, then apply `max`."""
    query, check = compile_query(text, fields, case_sensitive)
    chosen: Sequence[T]
    if query.sort_by is None and query.page is None:
        out: list[T] = []
        for item in items:
            if limit is not None and len(out) >= limit:
                break
            if check(item):
                out.append(item)
        return out
    chosen = [item for item in items if check(item)]
    if query.sort_by is not None:
        field = fields[query.sort_by]

        def key(item: T) -> tuple[int, Any]:
            value = field.get(item)
            if field.kind in ("number", "time"):
                number = _as_number(value)
                return (number is None, number if number is not None else 0.0)
            return (value is None, str(value or "").lower())
        chosen = sorted(chosen, key=key, reverse=query.descending)
    if query.page is not None:
        size = limit if limit is not None else DEFAULT_PAGE_SIZE
        start = (query.page - 1) * size
        return list(chosen[start:start + size])
    return list(chosen[:limit] if limit is not None else chosen)


__all__ = ["DEFAULT_PAGE_SIZE", "Field", "Query", "Term", "compile_query", "parse", "parse_time",
           "run"]
