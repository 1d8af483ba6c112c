"""How one step of an apply ended: the report's vocabulary and its journal spelling.

This enum is due to move to `reconciler/model/vocab.py` with the project's other shared
vocabularies; it lives here until that module exists, so that two changes do not both create it.
The values are wire strings (step records in JSON output, progress events, the controller's
metrics) and must not change.
"""
from __future__ import annotations

from enum import Enum

from reconciler.store.records import StepOutcome as JournalOutcome


class StepOutcome(str, Enum):
    OK = "ok"
    FAILED = "failed"
    PENDING = "pending"            # above --max-disruption: not run, journaled as skipped
    NOT_STARTED = "not-started"    # the rollout halted or was stopped first: never journaled
    STOPPED = "stopped"            # a stop request (SIGTERM) ended its wait before it finished

    # A str mixin would otherwise format as "StepOutcome.OK" (Python 3.11), and these values
    # end up in messages and log lines.
    def __str__(self) -> str:
        return self.value

    @property
    def journal_value(self) -> JournalOutcome:
        """The journal's word for it: the journal knows only ok / failed / skipped, and a step
        that did not run (pending, or not started) is "skipped" there."""
        return _JOURNAL[self]

    @property
    def is_failure(self) -> bool:
        return self is StepOutcome.FAILED


_JOURNAL: dict[StepOutcome, JournalOutcome] = {
    StepOutcome.OK: "ok", StepOutcome.FAILED: "failed",
    StepOutcome.PENDING: "skipped", StepOutcome.NOT_STARTED: "skipped",
    # Journaled as failed: it did not finish, and may have taken effect (recovery reads that).
    StepOutcome.STOPPED: "failed"}


__all__ = ["StepOutcome"]
