"""JSON Schema checks of one spec document, reported at FILE:LINE:COL with human messages.

jsonschema finds the errors; this module decides where each one points (an unknown key at the key,
a bad value at the value, a missing key at its parent mapping) and words it for a person.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from reconciler.errors import SpecIssue
from reconciler.spec.load import SpecDocument, SpecPath

# schemas/spec.schema.json is the copy editors point at; reconciler/data/ holds the copy a wheel
# ships (tests keep the two identical). A checkout reads the former, an installed copy the latter.
_REPO_SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "spec.schema.json"
PACKAGED_SCHEMA = Path(__file__).resolve().parents[1] / "data" / "spec.schema.json"
SCHEMA_PATH = _REPO_SCHEMA if _REPO_SCHEMA.is_file() else PACKAGED_SCHEMA

_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "a whole number", "number": "a number", "boolean": "true or false",
               "null": "empty"}

# Keys that are refused with a message of their own (in semantic.py) instead of "unknown key".
_EXPLAINED_KEYS = {("engine", "password")}


@lru_cache(maxsize=1)
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def check_document(doc: SpecDocument) -> list[SpecIssue]:
    """Every schema problem in `doc`, one issue each, de-duplicated."""
    issues: dict[tuple[int, int, str, str], SpecIssue] = {}
    for error in validator().iter_errors(doc.data):
        for issue in _issues(doc, error):
            issues.setdefault((issue.line, issue.column, issue.path, issue.message), issue)
    return list(issues.values())


def _issues(doc: SpecDocument, error: ValidationError,
            foreign: dict[str, str] | None = None) -> Iterator[SpecIssue]:
    """Issues of one error; `foreign` maps keys of the other oneOf forms to those forms' titles."""
    path: SpecPath = tuple(error.absolute_path)
    kind = error.validator
    if kind in ("oneOf", "anyOf") and error.context:
        yield from _branch_issues(doc, error)
    elif kind == "additionalProperties":
        yield from _unknown_keys(doc, path, error, foreign or {})
    elif kind == "propertyNames" or "propertyNames" in error.schema_path:
        # jsonschema reports a bad key as an error of the key's own value, at the mapping's path.
        bad = error.instance
        message = _schema_message(error, bad) or f"'{bad}' is not an allowed key"
        yield doc.issue(path + (str(bad),), message, prefer_key=True)
    elif kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        if not _misspelt(missing, error):
            yield doc.issue(path, f"missing required key '{missing}'", prefer_key=True)
    elif kind == "uniqueItems":
        where, message = _repeated(path, error.instance)
        yield doc.issue(where, message)
    else:
        yield doc.issue(path, _value_message(error))


def _branch_issues(doc: SpecDocument, error: ValidationError) -> Iterator[SpecIssue]:
    """One of several shapes was wanted: report the errors of the shape the user evidently meant."""
    instance = error.instance
    if not isinstance(instance, dict):
        wanted = {_TYPE_WORDS.get(str(b.get("type")), "") for b in _branches(error)} - {""}
        yield doc.issue(tuple(error.absolute_path),
                        f"must be {' or '.join(sorted(wanted)) or 'a mapping'}")
        return
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    branches = _branches(error)

    def fit(index: int) -> tuple[int, int]:
        props = branches[index].get("properties", {}) if index < len(branches) else {}
        known = sum(1 for key in instance if key in props)
        return (known, -len(by_branch.get(index, ())))

    path: SpecPath = tuple(error.absolute_path)
    if not by_branch:   # every branch matched (oneOf wants exactly one)
        yield doc.issue(path, "matches more than one allowed form")
        return
    best = max(by_branch, key=fit)
    if fit(best)[0] == 0:   # nothing hints at a form: name them all
        forms = [f"{b.get('title', 'form').lower()} ({', '.join(b.get('required', []))})"
                 for b in branches]
        yield doc.issue(path, f"give a {' or a '.join(forms)}", prefer_key=True)
        return
    best_props = branches[best].get("properties", {})
    foreign = {key: str(b.get("title", "form")).lower()
               for i, b in enumerate(branches) if i != best
               for key in b.get("properties", {}) if key not in best_props}
    for sub in by_branch[best]:
        yield from _issues(doc, sub, foreign)


def _branches(error: ValidationError) -> list[dict[str, Any]]:
    resolved: list[dict[str, Any]] = []
    root = validator().schema
    for branch in error.validator_value or ():
        ref = branch.get("$ref", "") if isinstance(branch, dict) else ""
        if ref.startswith("#/$defs/"):
            branch = root["$defs"][ref.removeprefix("#/$defs/")]
        resolved.append(branch if isinstance(branch, dict) else {})
    return resolved


def _unknown_keys(doc: SpecDocument, path: SpecPath, error: ValidationError,
                  foreign: dict[str, str]) -> Iterable[SpecIssue]:
    known = list(error.schema.get("properties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    this_form = str(error.schema.get("title", "this form")).lower()
    for key in instance:
        if key in known or (path + (key,)) in _EXPLAINED_KEYS:
            continue
        if key in foreign:
            yield doc.issue(path + (key,), f"'{key}' belongs to a {foreign[key]}, not a "
                                           f"{this_form}: give one or the other", prefer_key=True)
            continue
        close = _suggestion(key, known)
        hint = (f" (did you mean '{close}'?)" if close
                else f" (allowed: {', '.join(known)})" if known else "")
        yield doc.issue(path + (key,), f"unknown key '{key}'{hint}", prefer_key=True)


def _suggestion(key: str, known: list[str]) -> str | None:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None


def _misspelt(missing: str, error: ValidationError) -> bool:
    """True when an unknown key of this mapping is a misspelling of `missing` (reported there)."""
    known = list(error.schema.get("properties", {}))
    instance = error.instance if isinstance(error.instance, dict) else {}
    return any(key not in known and _suggestion(key, known) == missing for key in instance)


def _repeated(path: SpecPath, items: object) -> tuple[SpecPath, str]:
    seen: list[object] = []
    for j, item in enumerate(items if isinstance(items, list) else []):
        if item in seen:
            return path + (j,), f"'{_short(item)}' is listed twice"
        seen.append(item)
    return path, "must not repeat an entry"


def _schema_message(error: ValidationError, value: object) -> str | None:
    template = error.schema.get("x-message") if isinstance(error.schema, dict) else None
    if not template:
        return None
    return str(template).replace("{value}", _short(value))


def _short(value: object) -> str:
    text = str(value).replace("\n", "\\n")
    return text if len(text) <= 60 else text[:57] + "..."


def _value_message(error: ValidationError) -> str:
    kind, expected, value = error.validator, error.validator_value, error.instance
    custom = _schema_message(error, value)
    if kind == "pattern" and value == "":
        return "must not be empty"   # the same words as minLength, so the two make one issue
    if kind in ("pattern", "minProperties", "maxProperties") and custom:
        return custom
    if kind == "type":
        wanted = expected if isinstance(expected, list) else [expected]
        words = " or ".join(_TYPE_WORDS.get(str(w), str(w)) for w in wanted)
        return f"must be {words}, not {_describe(value)}"
    if kind == "enum":
        return f"must be one of: {', '.join(str(e) for e in expected)}"
    if kind == "const":
        return f"must be '{expected}'"
    if kind == "minimum":
        return f"must be >= {expected}"
    if kind == "maximum":
        return f"must be <= {expected}"
    if kind == "exclusiveMinimum":
        return f"must be > {expected}"
    if kind == "exclusiveMaximum":
        return f"must be < {expected}"
    if kind == "minItems":
        return "must not be empty" if expected == 1 else f"needs at least {expected} items"
    if kind == "minLength":
        return "must not be empty"
    if kind == "maxLength":
        return f"must be at most {expected} characters"
    if kind == "minProperties":
        return "must not be empty"
    if kind == "maxProperties":
        return f"must have at most {expected} keys"
    if kind == "pattern":
        return f"'{_short(value)}' is not valid here"
    return str(error.message)


def _describe(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"'{_short(value)}'"
    return _short(value)
