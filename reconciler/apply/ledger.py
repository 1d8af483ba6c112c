"""What an apply run did: a record per step, hosts left degraded, and why the rollout halted.

The host cycles of one wave write here from their own threads, so the ledger keeps its own lock
(it guards nothing else); `ApplyResult` is the frozen copy a caller gets at the end.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.apply.outcome import StepOutcome
from reconciler.plan.actions import Action

# `ApplyResult.halted` when the stop event ended the run at a safe point.
STOPPED = "stopped"


@dataclass(frozen=True)
class StepRecord:
    step_id: str
    target: str
    action: str
    disruption: str
    outcome: StepOutcome
    message: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step_id, "target": self.target, "action": self.action,
                "disruption": self.disruption, "outcome": self.outcome.value,
                "message": self.message, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class ApplyResult:
    run_id: str
    steps: tuple[StepRecord, ...]
    degraded: Mapping[str, str] = field(default_factory=dict)   # host -> why
    halted: str | None = None      # why the rollout stopped early
    seconds: float = 0.0

    def by_outcome(self, outcome: StepOutcome | str) -> tuple[StepRecord, ...]:
        return tuple(s for s in self.steps if s.outcome == outcome)

    @property
    def failed(self) -> tuple[StepRecord, ...]:
        return self.by_outcome(StepOutcome.FAILED)

    @property
    def pending(self) -> tuple[StepRecord, ...]:
        return self.by_outcome(StepOutcome.PENDING)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.degraded and self.halted is None

    @property
    def stopped(self) -> bool:
        return self.halted == STOPPED


class Ledger:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._steps: list[StepRecord] = []
        self._degraded: dict[str, str] = {}
        self._halted: str | None = None

    def record(self, step: StepRecord) -> None:
        with self._lock:
            self._steps.append(step)

    def record_actions(self, actions: Iterable[tuple[int, Action]], outcome: StepOutcome,
                       message: str) -> None:
        """One record per plan action (by its plan index), none of them run."""
        for index, action in actions:
            self.record(StepRecord(str(index), action.target, action.kind,
                                   action.disruption.value, outcome, message))

    def not_started(self, actions: Iterable[tuple[int, Action]]) -> None:
        """Actions the rollout will not reach because it halted (or was stopped)."""
        self.record_actions(actions, StepOutcome.NOT_STARTED, f"not started: {self.halted}")

    def rest_not_started(self, actions: Iterable[tuple[int, Action]]) -> None:
        """`not_started` for those of `actions` that have no record yet."""
        with self._lock:
            done = {s.step_id for s in self._steps}
        self.not_started((i, a) for i, a in actions if str(i) not in done)

    def degrade(self, host: str, why: str) -> None:
        with self._lock:
            self._degraded[host] = why

    def halt(self, why: str) -> None:
        """End the rollout: nothing more starts. The first reason is the one reported."""
        with self._lock:
            if self._halted is None:
                self._halted = why

    @property
    def halted(self) -> str | None:
        with self._lock:
            return self._halted

    def result(self, seconds: float = 0.0) -> ApplyResult:
        with self._lock:
            return ApplyResult(self.run_id, tuple(self._steps), dict(self._degraded),
                               self._halted, seconds)


__all__ = ["ApplyResult", "Ledger", "STOPPED", "StepRecord"]
