"""Plan files: write/read a plan as JSON (with the observed snapshots it was made from) and tell,
field by field, which observed objects changed since (`stale_objects`).

This is the only module of `reconciler.plan` that does I/O (the atomic write and the read of a
plan file); everything else in the package is pure.

A saved plan carries the spec sources, the per-object fingerprints (sha256 of the canonical JSON of
each host or VM fact the plan depends on) and those canonical objects, so a stale check can say
"vm:vdi-01 status up -> down" instead of just "stale".
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.errors import PlanError
from reconciler.model.facts import Observed
from reconciler.plan.fingerprint import fingerprint, host_snapshot, vm_snapshot
from reconciler.plan.render_json import render_json
from reconciler.plan.result import Plan, plan_from_dict

MAX_CHANGES_SHOWN = 5


@dataclass(frozen=True)
class StaleObject:
    key: str
    what_changed: str


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> None:
    """Write the plan atomically (a reader never sees half a file)."""
    target = Path(path)
    text = render_json(plan, include_observed=True)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as err:
        raise PlanError(f"cannot save plan to {target}: {err.strerror or err}") from None


def load_plan(path: str | os.PathLike[str]) -> Plan:
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as err:
        raise PlanError(f"cannot read plan {target}: {err.strerror or err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise PlanError(f"{target}:{err.lineno}:{err.colno}: not a plan (invalid JSON: "
                        f"{err.msg})") from None
    return plan_from_dict(data)


def current_snapshot(key: str, observed: Observed, hosts: dict[str, Any] | None = None,
                     vms: dict[str, Any] | None = None) -> str | None:
    kind, _, name = key.partition(":")
    if kind == "host":
        host = (hosts or {h.name: h for h in observed.hosts}).get(name)
        if host is None:
            return None
        return host_snapshot(host, observed.probe(name))
    if kind == "vm":
        vm = (vms or {v.name: v for v in observed.vms}).get(name)
        return None if vm is None else vm_snapshot(vm)
    raise PlanError(f"unknown object key {key!r} in plan")


def stale_objects(plan: Plan, observed: Observed) -> list[StaleObject]:
    """Objects whose observed state differs from when `plan` was made, with what changed."""
    hosts = {h.name: h for h in observed.hosts}
    vms = {v.name: v for v in observed.vms}
    stale: list[StaleObject] = []
    for key, old_fp in sorted(plan.fingerprints.items()):
        now = current_snapshot(key, observed, hosts, vms)
        if now is None:
            stale.append(StaleObject(key, f"{key} no longer exists"))
            continue
        if fingerprint(now) == old_fp:
            continue
        before = plan.snapshots.get(key)
        if before is None:
            stale.append(StaleObject(key, f"{key} changed (fingerprint differs)"))
            continue
        changes = diff_objects(json.loads(before), json.loads(now))
        shown = [f"{key} {path} {old} -> {new}" for path, old, new in changes[:MAX_CHANGES_SHOWN]]
        if len(changes) > MAX_CHANGES_SHOWN:
            shown.append(f"and {len(changes) - MAX_CHANGES_SHOWN} more change(s)")
        stale.append(StaleObject(key, "; ".join(shown) or f"{key} changed"))
    return stale


def _item_key(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for name in ("name", "id", "path", "address", "host"):
            if isinstance(item.get(name), str):
                return item[name]
    return str(index)


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        if not value:
            out[path] = {}
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else k, out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{_item_key(v, i)}]", out)
    else:
        out[path] = value


def _show(value: Any) -> str:
    if value is _ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return value if value and " " not in value else json.dumps(value)
    return json.dumps(value, sort_keys=True)


_ABSENT = object()


def diff_objects(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """(path, old, new) for every leaf that differs; host snapshots drop their `engine.` prefix."""
    old: dict[str, Any] = {}
    new: dict[str, Any] = {}
    _flatten(before, "", old)
    _flatten(after, "", new)
    changes = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, _ABSENT), new.get(path, _ABSENT)
        if a != b:
            shown = path[len("engine."):] if path.startswith("engine.") else path
            changes.append((shown, _show(a), _show(b)))
    return changes
