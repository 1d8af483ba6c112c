"""The Plan: ordered actions, rollout waves, drift items, fingerprints and a summary.

A Plan is data: it renders as text, JSON or Markdown, is saved and loaded (`planfile.py`) and is
what the executor carries out. `plan_to_dict` / `plan_from_dict` round-trip it exactly.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.errors import PlanError
from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import Action, Disruption, action_from_dict

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DriftItem:
    """One difference or problem; `status` says which kind (see DriftStatus)."""

    key: str                         # "host:NAME" | "vm:NAME"
    status: DriftStatus              # a plain string is taken for the status it names
    message: str
    location: str | None = None      # FILE:LINE:COL of the spec entry it concerns

    def __post_init__(self) -> None:
        if not isinstance(self.status, DriftStatus):
            object.__setattr__(self, "status", DriftStatus(self.status))

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "status": self.status.value, "message": self.message,
                "location": self.location}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> DriftItem:
        return DriftItem(key=data["key"], status=data["status"], message=data["message"],
                         location=data.get("location"))


@dataclass(frozen=True)
class Note:
    """Something the plan could not check (e.g. a host that was not probed)."""

    key: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "message": self.message}


@dataclass(frozen=True)
class PlanWarning:
    """Something risky the fleet already has and the plan leaves as it is (so it blocks nothing),
    with what to do about it: a GPU attached while a host driver holds it, vGPUs configured on
    down VMs beyond the seats they would need when all started."""

    key: str
    message: str
    location: str | None = None      # FILE:LINE:COL of the spec entry it concerns

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "message": self.message, "location": self.location}

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> PlanWarning:
        return PlanWarning(key=data["key"], message=data["message"],
                           location=data.get("location"))


@dataclass(frozen=True)
class Wave:
    """Host cycles that may run at once: at most maxUnavailable hosts per cluster."""

    number: int
    hosts: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "hosts": list(self.hosts)}


@dataclass(frozen=True)
class SeatCount:
    """vGPU seats of one type as the engine counts them: instances of running VMs now (`before`)
    and once the plan ran (`after`); `configured`: instances configured on every VM after the
    plan, running or not (a down VM takes its seats only when it starts)."""

    mdev_type: str
    before: int
    after: int
    configured: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.mdev_type, "before": self.before, "after": self.after}
        if self.configured is not None:
            out["configured"] = self.configured
        return out


@dataclass(frozen=True)
class Summary:
    hosts_to_reboot: tuple[str, ...] = ()
    vms_to_restart: tuple[str, ...] = ()
    changes: int = 0
    blockers: int = 0
    pending: int = 0
    drift: int = 0
    unmanaged: int = 0
    seats: tuple[SeatCount, ...] = ()
    warnings: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {"hosts_to_reboot": list(self.hosts_to_reboot),
               "vms_to_restart": list(self.vms_to_restart), "changes": self.changes,
               "blockers": self.blockers, "pending": self.pending, "drift": self.drift,
               "unmanaged": self.unmanaged, "seats": [s.to_dict() for s in self.seats]}
        if self.warnings:
            out["warnings"] = self.warnings
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Summary:
        return Summary(hosts_to_reboot=tuple(data["hosts_to_reboot"]),
                       vms_to_restart=tuple(data["vms_to_restart"]), changes=data["changes"],
                       blockers=data["blockers"], pending=data["pending"], drift=data["drift"],
                       unmanaged=data["unmanaged"],
                       seats=tuple(SeatCount(s["type"], s["before"], s["after"],
                                             s.get("configured")) for s in data["seats"]),
                       warnings=data.get("warnings", 0))

    def line(self) -> str:
        """'Plan: 2 hosts to reboot, 1 VM to restart, 5 changes, 1 blocker.' (and ', 2 warnings'
        when there are any)"""
        def n(count: int, word: str, plural: str | None = None) -> str:
            return f"{count} {word if count == 1 else (plural or word + 's')}"
        return (f"Plan: {n(len(self.hosts_to_reboot), 'host')} to reboot, "
                f"{n(len(self.vms_to_restart), 'VM')} to restart, "
                f"{n(self.changes, 'change')}, {n(self.blockers, 'blocker')}"
                + (f", {n(self.warnings, 'warning')}" if self.warnings else "") + ".")


@dataclass(frozen=True)
class Plan:
    """Result of `plan()`. The mappings are read-only by convention (built once, never mutated).

    fingerprints: sha256 of the canonical JSON of every observed object the plan depends on (what
    its actions change or were decided by; see docs/plan.md);
    snapshots: that canonical JSON itself, so a stale check can name the fields that changed;
    desired_fingerprints: per object, the fingerprint of its desired settings, which the store
    records as `applied` once the object converged.
    """

    sources: tuple[str, ...] = ()
    actions: tuple[Action, ...] = ()
    waves: tuple[Wave, ...] = ()
    drift: tuple[DriftItem, ...] = ()
    notes: tuple[Note, ...] = ()
    warnings: tuple[PlanWarning, ...] = ()
    fingerprints: Mapping[str, str] = field(default_factory=dict)
    desired_fingerprints: Mapping[str, str] = field(default_factory=dict)
    snapshots: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    summary: Summary = field(default_factory=Summary)

    @property
    def blockers(self) -> tuple[DriftItem, ...]:
        return tuple(d for d in self.drift if d.status is DriftStatus.BLOCKED)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @property
    def max_disruption(self) -> Disruption:
        return max((a.disruption for a in self.actions), default=Disruption.NONE)

    def actions_for(self, key: str) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.target == key)


def plan_to_dict(plan: Plan, include_observed: bool = False) -> dict[str, Any]:
    """The JSON form (schemas/plan.schema.json). `observed` (the snapshots) only for saved plans."""
    out: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "sources": list(plan.sources),
        "actions": [a.to_dict() for a in plan.actions],
        "waves": [w.to_dict() for w in plan.waves],
        "drift": [d.to_dict() for d in plan.drift],
        "notes": [n.to_dict() for n in plan.notes],
        "fingerprints": dict(sorted(plan.fingerprints.items())),
        "desired_fingerprints": dict(sorted(plan.desired_fingerprints.items())),
        "summary": plan.summary.to_dict(),
    }
    if plan.warnings:       # only when there are any: plans without warnings keep their form
        out["warnings"] = [w.to_dict() for w in plan.warnings]
    if include_observed:
        out["observed"] = {k: json.loads(v) for k, v in sorted(plan.snapshots.items())}
    return out


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    if not isinstance(data, Mapping) or data.get("format_version") != FORMAT_VERSION:
        found = data.get("format_version") if isinstance(data, Mapping) else None
        raise PlanError(f"unsupported plan format_version {found!r} (expected {FORMAT_VERSION})")
    try:
        observed = data.get("observed") or {}
        return Plan(
            sources=tuple(data["sources"]),
            actions=tuple(action_from_dict(a) for a in data["actions"]),
            waves=tuple(Wave(w["number"], tuple(w["hosts"])) for w in data["waves"]),
            drift=tuple(DriftItem.from_dict(d) for d in data["drift"]),
            notes=tuple(Note(n["key"], n["message"]) for n in data["notes"]),
            warnings=tuple(PlanWarning.from_dict(w) for w in data.get("warnings", ())),
            fingerprints=dict(data["fingerprints"]),
            desired_fingerprints=dict(data["desired_fingerprints"]),
            snapshots={k: json.dumps(v, sort_keys=True, separators=(",", ":"))
                       for k, v in observed.items()},
            summary=Summary.from_dict(data["summary"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise PlanError(f"malformed plan: missing or wrong field {err}") from None
