"""The words every layer shares: how much an action disturbs, how an object differs from the spec,
how an apply step ended.

Each is a string enum whose members equal their wire values ("host-reboot", "blocked", "ok"), so
plan files, JSON output and the store keep their format while code compares members and asks
them questions (`rank`, `out_of_sync`, `journal_value`) instead of keeping lists of strings.
"""
from __future__ import annotations

from enum import Enum, StrEnum
from typing import Literal


class Disruption(str, Enum):
    """How much an action disturbs the fleet; ordered none < vm-restart < host-reboot."""

    NONE = "none"
    VM_RESTART = "vm-restart"
    HOST_REBOOT = "host-reboot"

    @property
    def rank(self) -> int:
        return _DISRUPTION_ORDER.index(self)

    # str's own comparisons would order by spelling; disruption must order by severity.
    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Disruption):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Disruption):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Disruption):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Disruption):
            return NotImplemented
        return self.rank >= other.rank


_DISRUPTION_ORDER = (Disruption.NONE, Disruption.VM_RESTART, Disruption.HOST_REBOOT)


class DriftStatus(StrEnum):
    """How an object differs from the spec, in the one order every output lists them.

    Most urgent first: what cannot converge, then what moved away from settings in force (nobody
    asked for that), then what the spec asks for and is not in force yet (expected after a spec
    change), then GPU use no spec mentions (reported only). Plans, drift reports, apply summaries
    and metrics all use this order.
    """

    BLOCKED = "blocked"        # cannot converge; the message says why and what to do
    DRIFT = "drift"            # the fleet moved away from settings that were in force
    PENDING = "pending"        # the spec asks for something not in force yet, or a change waits
    UNMANAGED = "unmanaged"    # GPU use no spec mentions: reported, never changed unless pruned

    @property
    def rank(self) -> int:
        return _DRIFT_RANK[self]

    @property
    def out_of_sync(self) -> bool:
        """Whether an item of this status means the fleet does not match the spec."""
        return self is not DriftStatus.UNMANAGED


_DRIFT_RANK = {status: rank for rank, status in enumerate(DriftStatus)}


class StepOutcome(StrEnum):
    """How one step of an apply ended, as reported (step records in JSON output, progress events,
    the controller's metrics: the values must not change). The journal has a shorter vocabulary
    of its own, `journal_value`."""

    OK = "ok"
    FAILED = "failed"
    PENDING = "pending"            # above --max-disruption: not run, journaled as skipped
    NOT_STARTED = "not-started"    # the rollout halted or was stopped first
    STOPPED = "stopped"            # a stop request (SIGTERM) ended its wait before it finished

    @property
    def journal_value(self) -> JournalOutcome:
        """The journal's word for it: the journal knows only ok / failed / skipped, and a step
        that did not run (pending, or not started) is "skipped" there."""
        return _JOURNAL_VALUES[self]

    @property
    def is_failure(self) -> bool:
        return self is StepOutcome.FAILED


# What the journal records (reconciler.store keeps the same three words for its rows).
JournalOutcome = Literal["ok", "failed", "skipped"]

_JOURNAL_VALUES: dict[StepOutcome, JournalOutcome] = {
    StepOutcome.OK: "ok", StepOutcome.FAILED: "failed", StepOutcome.PENDING: "skipped",
    StepOutcome.NOT_STARTED: "skipped",
    # Journaled as failed: it did not finish, and may have taken effect (recovery reads that).
    StepOutcome.STOPPED: "failed"}
