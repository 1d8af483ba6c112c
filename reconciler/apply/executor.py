"""The executor: carries out a Plan's actions through the verified engine and host operations.

Order and safety (docs/apply.md):
- host settings that need no reboot first; then host cycles wave by wave, each cycle only after
  `Budget` confirmed that taking the host out of `up` keeps its cluster within maxUnavailable;
  a cycle is: stop the VMs the plan stops for it -> deactivate (maintenance, migrations) -> our
  modprobe.d file -> dracut -> engine kernel cmdline / vGPU placement -> install with reboot
  (activate=false) -> activate -> re-observe and verify (booted args, modules, vGPU manager);
- then each VM's changes (pin, devices, mediated devices, console, stop/start as planned).
- every step is journaled before and after, and after it returns its target is re-observed and
  the action's verifications checked: a step that did not take effect fails;
- a host that fails its cycle after deactivation but is healthy is activated again (with the VMs
  stopped for it started again) before the rollout halts; a host that does not come back is
  reported degraded and the rollout halts: hosts done stay done, hosts not started stay untouched;
- a VM whose step fails keeps its remaining steps; other VMs go on;
- actions above `max_disruption` are not run and are reported as pending;
- a `stop` event (SIGTERM in the controller) is honoured only where nothing is left down: before
  a unit starts and before a step that takes something down, never between a deactivate and its
  host's activation nor between a VM's stop and its start. Cycles already running finish, VMs this
  run stopped are started again, the rest is reported not started and the result says
  `halted="stopped"`.

This module is the rollout: units in order, waves side by side, halting and stopping. What one
cycle does is host_cycle.py, what one action does is dispatch.py, the journaled step is steps.py.
The executor reaches the engine only through `EngineOps` and the store only through `Journal`.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

from reconciler.apply import host_cycle
from reconciler.apply.context import RunContext, UnitContext
from reconciler.apply.ledger import STOPPED, ApplyResult, Ledger, StepRecord
from reconciler.apply.ops.protocol import EngineOps
from reconciler.apply.outcome import StepOutcome
from reconciler.apply.progress import LogProgress, Progress
from reconciler.apply.rollout import Budget, BudgetGate, Unit, units_of
from reconciler.apply.settings import ApplyPolicy, FleetAccess, Timeouts
from reconciler.apply.steps import DownVms, Steps
from reconciler.errors import ReconcilerError
from reconciler.log import get_logger
from reconciler.plan.actions import StartVm, StopVm
from reconciler.plan.result import Plan
from reconciler.store.interface import Journal

log = get_logger(__name__)


class Executor:
    """Runs one plan. Build one per apply run (it keeps the run's step records)."""

    def __init__(self, access: FleetAccess, journal: Journal, run_id: str, budget: Budget, *,
                 policy: ApplyPolicy = ApplyPolicy(), timeouts: Timeouts = Timeouts(),
                 progress: Progress | None = None, stop: threading.Event | None = None
                 ) -> None:
        self.access = access
        self.run_id = run_id
        self.policy = policy
        self.timeouts = timeouts
        self.progress = progress or LogProgress()
        self.ledger = Ledger(run_id)
        self.down_vms = DownVms()
        self.context = RunContext(
            steps=Steps(journal, run_id, self.progress, self.ledger, self.down_vms),
            ledger=self.ledger, down_vms=self.down_vms, gate=BudgetGate(budget), policy=policy,
            timeouts=timeouts, transports=access.transports, stop=stop)
        # Requests of the workers' own connections, added up as each closes.
        self._counts_lock = threading.Lock()
        self._worker_counts = (0, 0)

    # ---- the run ----------------------------------------------------------------------------

    def engine_counts(self) -> tuple[int, int]:
        """(requests, failed requests) sent so far on this run's engine connections."""
        requests, failed = self.access.ops.request_counts()
        with self._counts_lock:
            return requests + self._worker_counts[0], failed + self._worker_counts[1]

    def steps_total(self, units: Sequence[Unit]) -> int:
        """The steps `run` reports through the progress hook when all goes well: every action
        within --max-disruption, plus a cycle's deactivate, install and activate stages."""
        total = 0
        for unit in units:
            if unit.kind == "host-cycle":
                if all(self.policy.allows(a) for _, a in unit.actions):
                    total += len(unit.actions) + 3
            else:
                total += sum(1 for _, a in unit.actions if self.policy.allows(a))
        return total

    def run(self, plan: Plan) -> ApplyResult:
        started = time.monotonic()
        units = units_of(plan.actions)
        announce = getattr(self.progress, "run_started", None)
        if announce is not None:
            announce(self.run_id, self.steps_total(units))
        try:
            self._run_units(units)
        finally:
            finished = getattr(self.progress, "run_finished", None)   # optional, as run_started
            if finished is not None:
                finished()
        return self.result(time.monotonic() - started)

    def _run_units(self, units: Sequence[Unit]) -> None:
        position = 0
        while position < len(units):
            unit = units[position]
            if unit.kind == "host-cycle":
                wave = [u for u in units[position:] if u.kind == "host-cycle"
                        and u.wave == unit.wave]
                position += len(wave)
                self._run_wave(wave)
                continue
            position += 1
            if self.ledger.halted is not None and not self._restarts_our_vm(unit):
                self.ledger.not_started(unit.actions)
                continue
            if self.context.stop_requested() and not self._restarts_our_vm(unit):
                self.ledger.not_started(unit.actions)
                continue
            self._simple(unit, self.context.unit(self.access.ops, unit.wave),
                         halt_on_failure=unit.kind == "host-config")

    def recover(self, hosts: Sequence[str], vms: Sequence[str]) -> None:
        """Bring back hosts and VMs a dead run took down (host_cycle.recover)."""
        host_cycle.recover(hosts, vms, self.context.unit(self.access.ops, None))

    def result(self, seconds: float = 0.0) -> ApplyResult:
        return self.ledger.result(seconds)

    # ---- host cycles, wave by wave -----------------------------------------------------------

    def _run_wave(self, wave: Sequence[Unit]) -> None:
        """One wave's host cycles: side by side when there is more than one (the budget still
        decides, host by host, whether each may start); a failure lets the cycles already
        running finish and starts nothing more."""
        if self.access.open_ops is None or len(wave) == 1:
            for unit in wave:
                self._cycle(unit, self.access.ops)
            return
        with ThreadPoolExecutor(max_workers=min(len(wave), max(1, self.access.max_parallel)),
                                thread_name_prefix="host-cycle") as pool:
            for future in [pool.submit(self._cycle_worker, unit) for unit in wave]:
                future.result()

    def _cycle_worker(self, unit: Unit) -> None:
        """A cycle on a thread of its own, with `EngineOps` (a connection) of its own."""
        assert self.access.open_ops is not None
        if self.ledger.halted is not None:
            self.ledger.not_started(unit.actions)
            return
        with ExitStack() as stack:
            try:
                ops = stack.enter_context(self.access.open_ops())
            except ReconcilerError as err:
                why = f"cannot open an engine connection: {err}"
                self.ledger.record_actions(unit.actions, StepOutcome.FAILED, why)
                self.ledger.halt(why)
                return
            try:
                self._cycle(unit, ops)
            finally:
                requests, failed = ops.request_counts()
                with self._counts_lock:
                    self._worker_counts = (self._worker_counts[0] + requests,
                                           self._worker_counts[1] + failed)

    def _cycle(self, unit: Unit, ops: EngineOps) -> None:
        if self.ledger.halted is not None or self.context.stop_requested():
            self.ledger.not_started(unit.actions)
            return
        end = host_cycle.run_cycle(unit, self.context.unit(ops, unit.wave))
        log.debug("apply.cycle_ended", run_id=self.run_id, host=unit.name, end=end.value)

    # ---- simple units: host settings without a cycle, VM changes -----------------------------

    def _restarts_our_vm(self, unit: Unit) -> bool:
        """A VM unit that starts a VM this run stopped (for a host cycle): it runs even when
        stopping or halted by a failure elsewhere, so that no VM is left down by us."""
        if self.ledger.halted is None or unit.kind != "vm":
            return False
        return unit.name in self.down_vms and any(isinstance(a, StartVm)
                                                  for _, a in unit.actions)

    def _simple(self, unit: Unit, ctx: UnitContext, *, halt_on_failure: bool) -> None:
        """The unit's actions in order; a failure skips the rest of the unit (and, for host
        settings, halts the rollout: a host we could not configure is not cycled)."""
        for position, (index, action) in enumerate(unit.actions):
            if isinstance(action, StopVm) and self.context.stop_requested():
                self.ledger.rest_not_started(unit.actions)
                return
            if not self.policy.allows(action):
                self.context.steps.pending(index, action, self.policy.pending_reason(action))
                continue
            if ctx.action_step(index, action).ok:
                continue
            for later_index, later in unit.actions[position + 1:]:
                self.ledger.record(StepRecord(str(later_index), later.target, later.kind,
                                              later.disruption.value, StepOutcome.NOT_STARTED,
                                              f"not started: an earlier step of {unit.target} "
                                              "failed"))
            if halt_on_failure:
                self.ledger.halt(f"{unit.target}: {action.kind} failed")
            return


__all__ = ["ApplyPolicy", "ApplyResult", "Executor", "FleetAccess", "STOPPED", "StepRecord",
           "Timeouts"]
