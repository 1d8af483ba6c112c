"""Test-only builders: frozen model/fact dataclasses from plain YAML data.

Keys are the dataclass field names (snake_case). Lists become tuples, nested mappings become the
annotated dataclass, a mapping given where a tuple of pairs is expected becomes its sorted items.
Unknown keys are an error, so a typo in a fixture fails loudly instead of being ignored.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from reconciler.model.facts import Observed
from reconciler.spec.model import DesiredState, EngineSpec, Location


def build(tp: Any, data: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None:
            return None
        for opt in options:
            try:
                return build(opt, data)
            except (TypeError, ValueError):
                continue
        raise TypeError(f"{data!r} fits none of {options}")
    if origin is typing.Literal:
        if data not in typing.get_args(tp):
            raise ValueError(f"{data!r} not in {typing.get_args(tp)}")
        return data
    if origin is tuple:
        args = typing.get_args(tp)
        if isinstance(data, dict):
            data = sorted(data.items())
        if not isinstance(data, (list, tuple)):
            raise TypeError(f"expected a list for {tp}, got {data!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(build(args[0], d) for d in data)
        return tuple(build(a, d) for a, d in zip(args, data, strict=True))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(data, tp):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"expected a mapping for {tp.__name__}, got {data!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{tp.__name__}: unknown field(s) {sorted(unknown)}")
        return tp(**{k: build(hints[k], v) for k, v in data.items()})
    if tp is Path:
        return Path(data)
    if tp is Any or tp is object:
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise TypeError(f"expected bool, got {data!r}")
        return data
    if tp in (int, float, str):
        if tp is str and not isinstance(data, str):
            raise TypeError(f"expected str, got {data!r}")
        if tp is int and (isinstance(data, bool) or not isinstance(data, int)):
            raise TypeError(f"expected int, got {data!r}")
        return tp(data)
    raise TypeError(f"unsupported type {tp!r}")


def observed_from(data: dict[str, Any] | None) -> Observed:
    return build(Observed, data or {})


def desired_from(data: dict[str, Any] | None, source: str = "spec.yaml") -> DesiredState:
    """DesiredState from fixture data; profiles and VMs without a location get one in `source`."""
    data = dict(data or {})
    data.setdefault("engine", {"lab_fleet": "fixture"})
    data.setdefault("sources", [source])
    for section in ("host_profiles", "vms"):
        for index, item in enumerate(data.get(section) or (), start=1):
            item.setdefault("location", {"file": source, "line": index * 10, "column": 5})
    desired = build(DesiredState, data)
    assert isinstance(desired.engine, EngineSpec)
    return desired


def load_cases(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    return list(doc["cases"])


__all__ = ["Location", "build", "desired_from", "load_cases", "observed_from"]
