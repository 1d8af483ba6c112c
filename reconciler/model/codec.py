"""Frozen facts to plain JSON data and back, driven by the dataclasses' own type hints.

A saved plan carries the facts it was made from, so that `apply` can plan again from exactly
those facts and refuse a file whose actions were edited. The round trip is exact for every fact
type in `reconciler.model.facts` (a test checks it on real fleets), and a value of the wrong shape
is an error naming where it is, never a half-built fact.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class CodecError(ValueError):
    """Plain data that does not fit the fact type; the message names the path."""


def to_plain(value: Any) -> Any:
    """A dataclass (recursively) as dicts and lists of JSON scalars."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    return value


def from_plain(cls: type[T], data: Any, where: str = "$") -> T:
    """The `cls` instance that `to_plain` turned into `data`."""
    return _build(cls, data, where)  # type: ignore[no-any-return]


def _build(hint: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return data
    if origin is typing.Union or origin is types.UnionType:
        options = typing.get_args(hint)
        if data is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _build(option, data, where)
            except CodecError as err:
                errors.append(str(err))
        raise CodecError(errors[0] if errors else f"{where}: unexpected null")
    if origin is typing.Literal:
        if data not in typing.get_args(hint):
            raise CodecError(f"{where}: {data!r} is not one of {typing.get_args(hint)}")
        return data
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(data, list):
            raise CodecError(f"{where}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
        if len(args) != len(data):
            raise CodecError(f"{where}: expected {len(args)} items")
        return tuple(_build(a, item, f"{where}[{i}]") for i, (a, item) in enumerate(zip(args, data)))
    if dataclasses.is_dataclass(hint):
        return _dataclass(hint, data, where)
    if hint in (str, int, float, bool):
        # bool is an int in Python, and JSON has one number type: keep the two apart.
        ok = isinstance(data, hint) and not (hint is int and isinstance(data, bool))
        if hint is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if not ok:
            raise CodecError(f"{where}: expected {hint.__name__}, not {type(data).__name__}")
        return data
    raise CodecError(f"{where}: cannot decode type {hint!r}")


def _dataclass(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise CodecError(f"{where}: expected an object")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CodecError(f"{where}: unknown field {unknown[0]!r}")
    values: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            values[name] = _build(hints[name], data[name], f"{where}.{name}")
        elif (field.default is dataclasses.MISSING
              and field.default_factory is dataclasses.MISSING):
            raise CodecError(f"{where}: missing field {name!r}")
    return cls(**values)


__all__ = ["CodecError", "from_plain", "to_plain"]
