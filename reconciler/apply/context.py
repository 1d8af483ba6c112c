"""What the units of one apply run share, and what one unit runs with.

`RunContext` is shared by every unit of a run and by the threads of a wave: each part that
changes (ledger, VMs we stopped, the budget's in-flight hosts) has its own lock. `UnitContext` is
one unit's view: the `EngineOps` of the thread it runs on and the wave it belongs to, so that no
thread ever reaches for another thread's connection.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.access.transport import Transport
from reconciler.apply.dispatch import ActionContext, perform
from reconciler.apply.ledger import STOPPED, Ledger
from reconciler.apply.ops.protocol import EngineOps
from reconciler.apply.rollout import BudgetGate
from reconciler.apply.settings import ApplyPolicy, Timeouts
from reconciler.apply.steps import DownVms, StepResult, Steps
from reconciler.plan.actions import Action, Verification


@dataclass(frozen=True)
class RunContext:
    steps: Steps
    ledger: Ledger
    down_vms: DownVms
    gate: BudgetGate
    policy: ApplyPolicy
    timeouts: Timeouts
    transports: Mapping[str, Transport]
    stop: threading.Event | None = None

    @property
    def run_id(self) -> str:
        return self.steps.run_id

    def stop_requested(self) -> bool:
        """True once the stop event is set (and from then on); the first caller halts the run,
        so every later check and every unit not started says why."""
        if self.stop is None or not self.stop.is_set():
            return False
        self.ledger.halt(STOPPED)
        return True

    def unit(self, ops: EngineOps, wave: int | None) -> UnitContext:
        return UnitContext(self, ops, wave)


@dataclass(frozen=True)
class UnitContext:
    run: RunContext
    ops: EngineOps
    wave: int | None = None

    def step(self, step_id: str, target: str, name: str, disruption: str,
             body: Callable[[], str | None], detail: Mapping[str, Any] | None = None
             ) -> StepResult:
        return self.run.steps.run(step_id, target, name, disruption, body, detail,
                                  wave=self.wave)

    def action_step(self, index: int, action: Action) -> StepResult:
        """Perform one plan action, then re-observe its target and check its verifications."""
        context = ActionContext(self.ops, self.run.transports, self.run.timeouts,
                                self.run.policy.restart_policy)

        def body() -> str:
            return perform(action, context) + self.verify(action.verify)

        return self.step(str(index), action.target, action.kind, action.disruption.value, body,
                         {"description": action.description, "before": action.before,
                          "after": action.after})

    def verify(self, checks: Sequence[Verification]) -> str:
        """The step message's tail: verified, or which checks could not be observed here."""
        if not checks:
            return ""
        report = self.ops.verify(checks, self.run.timeouts.verify)
        if report.unobservable:
            return "; not observable here: " + ", ".join(report.unobservable)
        return "; verified"


__all__ = ["RunContext", "UnitContext"]
