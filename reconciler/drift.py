"""Drift reports: what differs between the spec and the fleet, where, and since when.

A report is built from a plan (the planner already classifies every difference as pending, drift,
blocked or unmanaged) and from the store's drift history (first-seen times). Objects the plan
changes without a drift item of their own get one, classed by the actions' reason, so that every
difference has a line, a class and a first-seen time. `reconcile drift` and the controller both
record drift through `record()`, so they share one history.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import Action, Reason
from reconciler.plan.result import Plan
from reconciler.store import DriftChange, DriftItemRecord, Store

# Classes that mean "not in sync"; unmanaged items are reported but never acted on.
OUT_OF_SYNC = frozenset(s for s in DriftStatus if s.out_of_sync)
# The classes in the order reports list and count them.
CLASS_ORDER = tuple(DriftStatus)


@dataclass(frozen=True)
class Difference:
    """One planned change that would remove (part of) a drift item."""

    kind: str
    description: str
    before: str | None
    after: str | None
    disruption: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "before": self.before,
                "after": self.after, "disruption": self.disruption, "note": self.note}


@dataclass(frozen=True)
class DriftEntry:
    key: str
    cls: str
    message: str
    location: str | None
    since: datetime | None
    changes: tuple[Difference, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "class": self.cls, "message": self.message,
                "location": self.location, "since": _iso(self.since),
                "changes": [c.to_dict() for c in self.changes]}


@dataclass(frozen=True)
class DriftReport:
    engine: str
    at: datetime
    entries: tuple[DriftEntry, ...]
    notes: tuple[str, ...] = ()

    @property
    def in_sync(self) -> bool:
        return not any(e.cls in OUT_OF_SYNC for e in self.entries)

    def counts(self) -> dict[str, int]:
        out = {cls.value: 0 for cls in CLASS_ORDER}
        for e in self.entries:
            out[e.cls] = out.get(e.cls, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "at": _iso(self.at), "in_sync": self.in_sync,
                "counts": self.counts(), "items": [e.to_dict() for e in self.entries],
                "notes": list(self.notes)}


_CLASSES = frozenset(DriftStatus)


def _class_rank(cls: str) -> int:
    """A class's place in reports; one the store kept from another version goes last."""
    return DriftStatus(cls).rank if cls in _CLASSES else len(_CLASSES)


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _difference(action: Action, owner: str) -> Difference:
    kind = action.kind if action.target == owner else f"{action.kind} {action.target}"
    return Difference(kind, action.description, action.before, action.after,
                      action.disruption.value, action.note)


def _synthetic_message(actions: Sequence[Action]) -> str:
    kinds = ", ".join(dict.fromkeys(a.kind for a in actions))
    return f"differs from the spec: {kinds}"


def drift_items(plan: Plan) -> list[tuple[str, str, str, str | None]]:
    """(key, class, message, location) for every drift item, plus one per object that has
    actions but no pending/drift/blocked item of its own (other than being stopped and started
    for its host's cycle)."""
    items: list[tuple[str, str, str, str | None]] = [
        (d.key, d.status.value, d.message, d.location) for d in plan.drift]
    covered = {d.key for d in plan.drift if d.status in OUT_OF_SYNC}
    by_target: dict[str, list[Action]] = {}
    for action in plan.actions:
        by_target.setdefault(action.target, []).append(action)
    for key, actions in sorted(by_target.items()):
        # A VM stopped and started around its host's cycle does not itself differ from the spec.
        if key in covered or all(a.vm_power for a in actions):
            continue
        cls = DriftStatus.DRIFT if any(a.reason == Reason.DRIFT for a in actions) \
            else DriftStatus.PENDING
        items.append((key, cls.value, _synthetic_message(actions), None))
    return items


def records(plan: Plan) -> list[DriftItemRecord]:
    """The plan's drift as the store records it."""
    return [DriftItemRecord(k, c, m) for k, c, m, _ in drift_items(plan)]


def unobserved(observed: Any) -> frozenset[str]:
    """Keys of hosts whose probe failed this time (SSH down, host rebooting): their host-level
    drift was not looked at, which is not the same as gone. (Without probes at all, `--no-probe`,
    every host would count, and its engine-level drift could then never resolve: such runs see
    only engine facts and are taken at their word.)"""
    return frozenset(f"host:{p.host}" for p in getattr(observed, "probes", ()) if not p.ok)


def carried(store: Store, engine_key: str, plan: Plan,
            not_seen: frozenset[str] | set[str]) -> list[DriftItemRecord]:
    """Open drift items of objects that could not be observed, kept as they were."""
    if not not_seen:
        return []
    current = set(records(plan))
    return [DriftItemRecord(k, c, m) for (k, c, m) in sorted(store.drift_since(engine_key))
            if k in not_seen and DriftItemRecord(k, c, m) not in current]


def record(store: Store, engine_key: str, plan: Plan, at: datetime | None = None,
           not_seen: frozenset[str] | set[str] = frozenset()
           ) -> tuple[DriftChange, dict[tuple[str, str, str], datetime]]:
    """Record this observation's drift; returns what changed and the first-seen times.

    Objects in `not_seen` (see `unobserved`) keep their open items: a host that cannot be probed
    for a while neither resolves its drift nor, once back, reports it as new with a fresh time."""
    scope = None
    if not_seen:
        known = {k for k, _, _ in store.drift_since(engine_key)}
        scope = (known | {r.key for r in records(plan)}) - set(not_seen)
    change = store.record_drift(engine_key, records(plan), at=at, scope=scope)
    return change, store.drift_since(engine_key)


def record_converged(store: Store, engine_key: str, plan: Plan, run_id: str,
                     not_seen: frozenset[str] | set[str] = frozenset()) -> int:
    """Record objects observed matching the spec as applied with the spec's fingerprint, so a
    later change away from it is classed as drift (the fleet moved), not pending (the spec moved).
    Objects in `not_seen` (a failed probe) were not fully observed and are left alone.
    Returns how many records changed."""
    busy = {a.target for a in plan.actions} | set(not_seen)
    busy |= {d.key for d in plan.drift if d.status in OUT_OF_SYNC}
    known = store.applied(engine_key)
    changed = 0
    for obj, fp in sorted(plan.desired_fingerprints.items()):
        if obj not in busy and known.get(obj) != fp:
            store.record_applied(engine_key, obj, fp, run_id)
            changed += 1
    return changed


def build_report(plan: Plan, engine_key: str,
                 since: Mapping[tuple[str, str, str], datetime] | None = None,
                 at: datetime | None = None,
                 kept: Sequence[DriftItemRecord] = ()) -> DriftReport:
    """`kept`: open items of objects not observed this time (see `carried`), listed as before."""
    seen = since or {}
    by_target: dict[str, list[Action]] = {}
    for action in plan.actions:
        by_target.setdefault(action.target, []).append(action)
    listed = {key for key, *_ in drift_items(plan)}
    for action in plan.actions:
        # A VM stopped only for its host's cycle is shown with that host's changes.
        host = getattr(action, "host", None)
        if action.vm_power and action.target not in listed and host:
            by_target.setdefault(f"host:{host}", []).append(action)
    entries: list[DriftEntry] = []
    shown: set[str] = set()
    for key, cls, message, location in drift_items(plan):
        changes: tuple[Difference, ...] = ()
        # Each object's planned changes are listed once, under its first out-of-sync item.
        if cls in OUT_OF_SYNC and key not in shown:
            changes = tuple(_difference(a, key) for a in by_target.get(key, ()))
            shown.add(key)
        entries.append(DriftEntry(key, cls, message, location, seen.get((key, cls, message)),
                                  changes))
    for item in kept:
        entries.append(DriftEntry(item.key, item.cls, item.message, None,
                                  seen.get((item.key, item.cls, item.message))))
    entries.sort(key=lambda e: (_class_rank(e.cls), e.key, e.message))
    # Warnings (existing risks the plan leaves alone) are no drift: the report shows them as notes.
    notes = (tuple(f"warning: {w.key}: {w.message}" for w in plan.warnings)
             + tuple(f"{n.key}: {n.message}" for n in plan.notes))
    return DriftReport(engine_key, at or datetime.now(timezone.utc), tuple(entries), notes)


# ---- rendering -------------------------------------------------------------------------------

def _when(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "first seen now"
    age = max(0, int((now - at).total_seconds()))
    if age < 120:
        ago = f"{age}s"
    elif age < 7200:
        ago = f"{age // 60}m"
    elif age < 172800:
        ago = f"{age // 3600}h"
    else:
        ago = f"{age // 86400}d"
    return f"since {at.strftime('%Y-%m-%d %H:%M:%S')} UTC ({ago} ago)"


def _arrow(change: Difference) -> str:
    if change.before is None and change.after is None:
        return ""
    return f": {change.before or '-'} -> {change.after or '-'}"


def render_text(report: DriftReport) -> str:
    lines: list[str] = []
    counts = report.counts()
    if report.in_sync:
        lines.append(f"In sync: {report.engine} matches the spec.")
    else:
        lines.append(f"Out of sync: {report.engine}.")
    lines.append("  " + ", ".join(f"{counts[c]} {c}" for c in CLASS_ORDER))
    current: str | None = None
    for entry in report.entries:
        if entry.cls != current:
            current = entry.cls
            lines.append("")
            lines.append(f"{entry.cls.capitalize()}:")
        where = f" ({entry.location})" if entry.location else ""
        lines.append(f"  {entry.key}: {entry.message}{where}")
        lines.append(f"      {_when(entry.since, report.at)}")
        for change in entry.changes:
            note = f" [{change.note}]" if change.note else ""
            lines.append(f"      ~ {change.kind} [{change.disruption}]{_arrow(change)}{note}")
    if report.notes:
        lines.append("")
        lines.append("Notes:")
        lines.extend(f"  - {n}" for n in report.notes)
    return "\n".join(lines) + "\n"


def render_json(report: DriftReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: DriftReport) -> str:
    counts = report.counts()
    head = "in sync" if report.in_sync else "out of sync"
    out = [f"### Drift: {_md(report.engine)} is {head}", "",
           "| " + " | ".join(CLASS_ORDER) + " |", "|" + "---|" * len(CLASS_ORDER),
           "| " + " | ".join(str(counts[c]) for c in CLASS_ORDER) + " |"]
    if report.entries:
        out += ["", "| object | class | what | since | where |", "|---|---|---|---|---|"]
        for e in report.entries:
            what = _md(e.message)
            if e.changes:
                what += "<br>" + "<br>".join(
                    f"`{c.kind}` ({c.disruption}){_md(_arrow(c))}" for c in e.changes)
            since = e.since.strftime("%Y-%m-%d %H:%M:%S UTC") if e.since else "now"
            out.append(f"| `{e.key}` | {e.cls} | {what} | {since} | {_md(e.location or '')} |")
    if report.notes:
        out += ["", "Notes:"] + [f"- {_md(n)}" for n in report.notes]
    return "\n".join(out) + "\n"


RENDERERS = {"text": render_text, "json": render_json, "markdown": render_markdown}

__all__ = ["DriftEntry", "DriftReport", "Difference", "OUT_OF_SYNC", "RENDERERS", "build_report",
           "carried", "drift_items", "record", "record_converged", "records",
           "unobserved", "render_json", "render_markdown", "render_text"]
