"""Plan files: write/read a plan as JSON (with the observed snapshots it was made from) and tell,
field by field, which observed objects changed since (`stale_objects`).

This is the only module of `reconciler.plan` that does I/O (the atomic write and the read of a
plan file); everything else in the package is pure.

A saved plan carries the spec sources, the per-object fingerprints (sha256 of the canonical JSON of
each host or VM fact the plan depends on) and those canonical objects, so a stale check can say
"vm:vdi-01 status up -> down" instead of just "stale".

It also says what it was made for (`made_for`, docs/apply.md § plan files): the engine (its URL and
the id the engine gives its own installation), each spec file by absolute path and SHA-256, and
the facts and applied fingerprints it was planned from. `apply` refuses the file when the engine
is another one, a spec file changed, or the actions are not what that spec gives against those
facts (an edited action) — before it sends anything that changes the fleet.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reconciler.errors import PlanError
from reconciler.model.codec import CodecError, from_plain, to_plain
from reconciler.model.facts import EngineIdentity, Observed, ObserveStats
from reconciler.plan.fingerprint import fingerprint, host_snapshot, vm_snapshot
from reconciler.plan.result import Plan, plan_from_dict, plan_to_dict

MAX_CHANGES_SHOWN = 5


@dataclass(frozen=True)
class StaleObject:
    key: str
    what_changed: str


@dataclass(frozen=True)
class SpecFile:
    path: str                  # absolute
    sha256: str


@dataclass(frozen=True)
class MadeFor:
    """What a saved plan was made for and from."""

    engine: EngineIdentity
    spec_files: tuple[SpecFile, ...]
    facts: Observed
    applied: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SavedPlan:
    plan: Plan
    made_for: MadeFor


# A plan file is a person-reviewed artefact, not a database: refuse anything absurd.
MAX_PLAN_FILE_BYTES = 256 * 1024 * 1024


def spec_files(sources: Sequence[str]) -> tuple[SpecFile, ...]:
    """Each spec file by absolute path and the SHA-256 of its content now."""
    out = []
    for src in sorted({str(Path(s).resolve()) for s in sources}):
        try:
            digest = hashlib.sha256(Path(src).read_bytes()).hexdigest()
        except OSError as err:
            raise PlanError(f"cannot read spec file {src}: {err.strerror or err}") from None
        out.append(SpecFile(src, digest))
    return tuple(out)


def save_plan(plan: Plan, path: str | os.PathLike[str], made_for: MadeFor | None = None) -> None:
    """Write the plan atomically (a reader never sees half a file)."""
    target = Path(path)
    data = plan_to_dict(plan, include_observed=True)
    if made_for is not None:
        data["sources"] = [f.path for f in made_for.spec_files]
        data["made_for"] = {
            "engine": to_plain(made_for.engine),
            "spec_files": [to_plain(f) for f in made_for.spec_files],
            "facts": to_plain(replace(made_for.facts, stats=ObserveStats())),
            "applied": dict(sorted(made_for.applied.items())),
        }
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as err:
        raise PlanError(f"cannot save plan to {target}: {err.strerror or err}") from None


def _read_json(target: Path) -> Any:
    try:
        with target.open("rb") as fh:
            raw = fh.read(MAX_PLAN_FILE_BYTES + 1)
    except OSError as err:
        raise PlanError(f"cannot read plan {target}: {err.strerror or err}") from None
    if len(raw) > MAX_PLAN_FILE_BYTES:
        raise PlanError(f"{target}: larger than {MAX_PLAN_FILE_BYTES // 2**20} MiB: not a plan")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise PlanError(f"{target}: not a plan (not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise PlanError(f"{target}:{err.lineno}:{err.colno}: not a plan (invalid JSON: "
                        f"{err.msg})") from None
    except RecursionError:
        raise PlanError(f"{target}: not a plan (nested too deeply)") from None


def load_plan(path: str | os.PathLike[str]) -> Plan:
    target = Path(path)
    return _from_dict(target, _read_json(target))


def _from_dict(target: Path, data: Any) -> Plan:
    try:
        return plan_from_dict(data)
    except PlanError as err:
        raise PlanError(f"{target}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any shape a hand edit can give: never a traceback
        raise PlanError(f"{target}: malformed plan ({type(err).__name__}: {err})") from None


def load_saved_plan(path: str | os.PathLike[str]) -> SavedPlan:
    """A plan file with what it was made for; a file without it (or a broken one) is refused."""
    target = Path(path)
    data = _read_json(target)
    plan = _from_dict(target, data)
    made_for = data.get("made_for") if isinstance(data, dict) else None
    if not isinstance(made_for, dict):
        raise PlanError(f"{target}: the plan does not say which engine and spec it was made for "
                        "(made by an older version?); make a new plan")
    try:
        spec = tuple(from_plain(SpecFile, f, f"made_for.spec_files[{i}]")
                     for i, f in enumerate(made_for["spec_files"]))
        engine = from_plain(EngineIdentity, made_for["engine"], "made_for.engine")
        facts = from_plain(Observed, made_for["facts"], "made_for.facts")
        applied = made_for.get("applied") or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in applied.items()):
            raise CodecError("made_for.applied: expected names mapped to fingerprints")
    except (CodecError, KeyError, TypeError, AttributeError) as err:
        raise PlanError(f"{target}: malformed plan: {err}") from None
    if not spec:
        raise PlanError(f"{target}: the plan names no spec files to reach the fleet with")
    return SavedPlan(plan, MadeFor(engine, spec, facts, dict(applied)))


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
