"""One journaled step: written to the journal before it starts and after it ends, announced to the
progress hook, and recorded in the run's ledger.

The journal entry is closed whatever happens, even on a bug or an interrupt, so that the next run
can tell a step that ended from one that a dead process left open.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.apply.ledger import Ledger, StepRecord
from reconciler.apply.outcome import StepOutcome
from reconciler.apply.progress import Progress, StepEvent
from reconciler.apply.waiting import WaitInterrupted
from reconciler.errors import ReconcilerError
from reconciler.plan.actions import ACTION_TYPES, Action
from reconciler.store.interface import Journal


@dataclass(frozen=True)
class StepResult:
    """How a step ended; `error` is set exactly when it failed."""

    ok: bool
    message: str | None = None
    error: ReconcilerError | None = None


class DownVms:
    """VMs this run stopped and has not started again: a halted or stopped run still starts them
    (in their own unit), so that no VM is left down by us."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()

    def stopped(self, vm: str) -> None:
        with self._lock:
            self._names.add(vm)

    def started(self, vm: str) -> None:
        with self._lock:
            self._names.discard(vm)

    def __contains__(self, vm: object) -> bool:
        with self._lock:
            return vm in self._names


class Steps:
    """Runs the journaled steps of one apply run (`run_id`), from any thread."""

    def __init__(self, journal: Journal, run_id: str, progress: Progress, ledger: Ledger,
                 down_vms: DownVms) -> None:
        self.journal = journal
        self.run_id = run_id
        self.progress = progress
        self.ledger = ledger
        self.down_vms = down_vms

    def run(self, step_id: str, target: str, name: str, disruption: str,
            body: Callable[[], str | None], detail: Mapping[str, Any] | None = None, *,
            wave: int | None = None) -> StepResult:
        """Journal, run `body` (its return value is the step's message), journal again.

        A `ReconcilerError` from `body` fails the step; anything else (a bug, an interrupt)
        closes the journal entry as failed and propagates.
        """
        event = StepEvent(self.run_id, step_id, target, name, disruption, wave)
        entry = self.journal.journal_begin(self.run_id, step_id, target, name, disruption,
                                           dict(detail or {}))
        self.progress.step_started(event)
        started = time.monotonic()
        try:
            message = body()
        except WaitInterrupted as err:
            seconds = time.monotonic() - started
            self._end(event, entry, StepOutcome.STOPPED, str(err), seconds)
            return StepResult(False, str(err), err)
        except ReconcilerError as err:
            seconds = time.monotonic() - started
            self._end(event, entry, StepOutcome.FAILED, str(err), seconds)
            return StepResult(False, str(err), err)
        except BaseException as err:
            seconds = time.monotonic() - started
            self.journal.journal_end(entry, StepOutcome.FAILED.journal_value,
                                     f"interrupted: {type(err).__name__}: {err}", seconds)
            raise
        seconds = time.monotonic() - started
        self.journal.journal_end(entry, StepOutcome.OK.journal_value, message, seconds)
        # Only a step that ended ok changed the VM's power for sure; a failed stop may still
        # have gone through, which recovery (reading the journal) and the next plan take care of.
        power = ACTION_TYPES[name].vm_power if name in ACTION_TYPES else None
        if target.startswith("vm:") and power == "down":
            self.down_vms.stopped(target[3:])
        elif target.startswith("vm:") and power == "up":
            self.down_vms.started(target[3:])
        self.progress.step_finished(event, StepOutcome.OK.value, seconds, message)
        self.ledger.record(StepRecord(step_id, target, name, disruption, StepOutcome.OK,
                                      message, seconds))
        return StepResult(True, message)

    def _end(self, event: StepEvent, entry: int, outcome: StepOutcome, message: str,
             seconds: float) -> None:
        self.journal.journal_end(entry, outcome.journal_value, message, seconds)
        self.progress.step_finished(event, outcome.value, seconds, message)
        self.ledger.record(StepRecord(event.step_id, event.target, event.action,
                                      event.disruption, outcome, message, seconds))

    def pending(self, index: int, action: Action, why: str) -> None:
        """An action above --max-disruption: journaled as skipped, reported pending, not run."""
        outcome = StepOutcome.PENDING
        entry = self.journal.journal_begin(self.run_id, str(index), action.target, action.kind,
                                           action.disruption.value, {"skipped": why})
        self.journal.journal_end(entry, outcome.journal_value, why, 0.0)
        self.ledger.record(StepRecord(str(index), action.target, action.kind,
                                      action.disruption.value, outcome, why))


__all__ = ["DownVms", "StepResult", "Steps"]
