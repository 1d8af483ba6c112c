"""The host cycle: one host out of service, changed, rebooted and back, or put back as it was.

A cycle (docs/apply.md, "Order of work"):
  stop the VMs the plan stops for it -> deactivate (maintenance; the engine migrates the rest)
  -> our modprobe.d file -> dracut -> engine kernel cmdline / vGPU placement
  -> install with reboot (activate=false) -> activate -> re-observe and verify.

What happens when a stage fails is the point of this module:
- before the host went down (a VM would not stop, maintenance refused): nothing to undo;
- after deactivation but before the reboot (maintenance stuck, a file or a field failed): a host
  that was up is activated again and the VMs stopped for it are started again ("never a healthy
  host left in maintenance");
- at or after the reboot (install failed, activation failed, a host that does not come back): the
  host is reported degraded and left for a person, never retried into a reboot loop.
Every failure halts the rollout; the cycle's remaining actions are reported not started. A cycle
tells its caller how it ended with a `CycleEnd`; the rollout's fate is in the ledger (`halt`).

`recover` is the same knowledge applied to a run that died mid-cycle: bring back what its
journal proves it took down.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from reconciler.apply.context import UnitContext
from reconciler.apply.ledger import STOPPED
from reconciler.apply.engine_ops import ActivationFailed, HostDidNotReturn, InstallFailed
from reconciler.apply.outcome import StepOutcome
from reconciler.apply.rollout import Unit
from reconciler.apply.waiting import WaitInterrupted
from reconciler.errors import ReconcilerError
from reconciler.log import get_logger
from reconciler.model.facts import Host
from reconciler.plan.actions import Disruption, HostCycle, StopVm, Verification
from reconciler.plan.checks import VGPU_MODULE

log = get_logger(__name__)

# Out of up, but healthy: activating it again brings it back.
_HEALTHY_DOWN = frozenset({"maintenance", "preparing_for_maintenance"})
_INSTALLING = frozenset({"installing", "reboot", "installing_os"})
_ACTIVATING = frozenset({"initializing", "connecting", "unassigned"})
# Errors after which the host is not trusted to come back by itself.
_DID_NOT_RETURN = (HostDidNotReturn, InstallFailed, ActivationFailed)
_REBOOT = Disruption.HOST_REBOOT.value


class CycleEnd(str, Enum):
    DONE = "done"                  # back up and verified
    PENDING = "pending"            # above --max-disruption: nothing ran
    NOT_STARTED = "not-started"    # stop requested or budget used up before anything went down
    FAILED = "failed"              # failed and halted; the host is as it was (or gone)
    RESTORED = "restored"          # failed before the reboot; host and its VMs brought back
    DEGRADED = "degraded"          # the host is out of service and left for a person


def run_cycle(unit: Unit, ctx: UnitContext) -> CycleEnd:
    """Carry out one host-cycle unit, from the budget check to its verification."""
    run = ctx.run
    found = unit.cycle
    assert found is not None, f"{unit.target}: a host-cycle unit without its cycle"
    if not all(run.policy.allows(a) for _, a in unit.actions):
        # One cycle, one decision: its file steps and the VM stops that serve it wait too.
        for index, action in unit.actions:
            run.steps.pending(index, action, run.policy.pending_reason(action))
        return CycleEnd.PENDING
    if run.stop_requested():
        run.ledger.not_started(unit.actions)
        return CycleEnd.NOT_STARTED
    host = ctx.ops.host(unit.name)
    if host is None:
        why = f"host {unit.name} no longer exists on the engine"
        run.ledger.record_actions(unit.actions, StepOutcome.FAILED, why)
        run.ledger.halt(why)
        return CycleEnd.FAILED
    verdict = run.gate.admit(host, ctx.ops.cluster_hosts(host.cluster))
    if not verdict.allowed:
        run.ledger.halt(verdict.message)
        run.ledger.not_started(unit.actions)
        return CycleEnd.NOT_STARTED
    try:
        if run.stop_requested():
            # The last point before this cycle takes anything down (its VM stops, then the
            # host); from here on it runs to its end.
            run.ledger.not_started(unit.actions)
            return CycleEnd.NOT_STARTED
        return _Cycle(unit, ctx, found, host).carry_out()
    finally:
        run.gate.release(unit.name)


class _Cycle:
    """One admitted cycle: what it needs to know to put its host back if a stage fails."""

    def __init__(self, unit: Unit, ctx: UnitContext, cycle: tuple[int, HostCycle],
                 host: Host) -> None:
        self.index, self.cycle = cycle
        self.unit = unit
        self.ctx = ctx
        self.name = unit.name
        self.key = unit.target
        self.was_up = host.status == "up"
        self.stopped: list[str] = []       # VMs stopped for this cycle, in order

    def carry_out(self) -> CycleEnd:
        ctx, ops, timeouts = self.ctx, self.ctx.ops, self.ctx.run.timeouts
        name, disruption = self.name, self.cycle.disruption.value
        for index, stop in self.unit.actions:
            if not isinstance(stop, StopVm):
                continue
            if not ctx.action_step(index, stop).ok:
                return self._abort(f"stopping {stop.object_name} failed")
            self.stopped.append(stop.object_name)
        step = ctx.step(f"{self.index}.deactivate", self.key, "deactivate", disruption,
                        lambda: ops.deactivate_host(name, timeouts.deactivate,
                                                    reason="gpu-reconciler host cycle").summary)
        if not step.ok:
            if isinstance(step.error, WaitInterrupted):
                # Asked to stop while the engine migrated VMs away: nothing is past the point
                # of no return, so the host is put back and the run ends as stopped.
                ctx.run.ledger.halt(STOPPED)
                return self._abort(str(step.error))
            return self._abort(f"deactivation failed: {step.error}")
        config = sorted(((i, a) for i, a in self.unit.actions
                         if not isinstance(a, (StopVm, HostCycle))),
                        key=lambda ia: ia[1].cycle_order)
        for index, action in config:
            if not ctx.action_step(index, action).ok:
                return self._abort(f"{action.kind} failed")
        step = ctx.step(f"{self.index}.install", self.key, "install", disruption,
                        lambda: ops.install_host(name, reboot=True, activate=False,
                                                 timeout=timeouts.install).summary)
        if not step.ok:
            return self._after_reboot_failure("install", step.error)
        step = ctx.step(f"{self.index}.activate", self.key, "activate", disruption,
                        lambda: ops.activate_host(name, timeouts.activate).summary)
        if not step.ok:
            return self._after_reboot_failure("activate", step.error)
        checks = list(self.cycle.verify)
        if ctx.run.policy.vgpu_required(name):
            checks += [Verification(self.key, "probe.vgpu_manager_service", "eq", "active"),
                       Verification(self.key, "probe.loaded_modules", "contains", VGPU_MODULE)]
        step = ctx.step(str(self.index), self.key, self.cycle.kind, disruption,
                        lambda: "host back up" + ctx.verify(checks),
                        {"description": self.cycle.description, "checks": len(checks)})
        if not step.ok:
            ctx.run.ledger.halt(f"host {name} came back up but did not verify: {step.error}")
            return CycleEnd.FAILED
        return CycleEnd.DONE

    def _abort(self, why: str) -> CycleEnd:
        """Failed before the reboot: put a host that was up back as it was, then halt."""
        run = self.ctx.run
        host = safe_host(self.ctx, self.name)
        status = host.status if host is not None else "unknown"
        end = CycleEnd.FAILED
        if self.was_up and status in _HEALTHY_DOWN:
            # Numbered after the unit's last action, which is the cycle the planner emits last.
            step = self.ctx.step(f"{self.unit.actions[-1][0]}.restore", self.key, "activate",
                                 _REBOOT,
                                 lambda: self.ctx.ops.activate_host(
                                     self.name, run.timeouts.activate).summary,
                                 {"why": why})
            if step.ok:
                restart_vms(self.ctx, self.stopped)
                end = CycleEnd.RESTORED
            else:
                run.ledger.degrade(self.name, f"{why}; activating it again failed: {step.error}")
                end = CycleEnd.DEGRADED
        elif self.was_up and status != "up":
            run.ledger.degrade(self.name, f"{why}; host is {status}")
            end = CycleEnd.DEGRADED
        run.ledger.halt(f"host {self.name}: {why}")
        run.ledger.rest_not_started(self.unit.actions)
        return end

    def _after_reboot_failure(self, stage: str, err: ReconcilerError | None) -> CycleEnd:
        """Install or activation failed. A host that did not come back as it should is left
        alone (degraded); one that is plainly up or in maintenance is handled like a failure
        before the reboot."""
        run = self.ctx.run
        host = safe_host(self.ctx, self.name)
        status = host.status if host is not None else "unknown"
        if isinstance(err, _DID_NOT_RETURN) or status not in ("up", "maintenance"):
            run.ledger.degrade(self.name, f"{stage}: {err} (status {status})")
            run.ledger.halt(f"host {self.name} is degraded after {stage}; rollout halted")
            run.ledger.rest_not_started(self.unit.actions)
            return CycleEnd.DEGRADED
        return self._abort(f"{stage} failed: {err}")


def restart_vms(ctx: UnitContext, vms: Sequence[str]) -> None:
    """Start again the VMs stopped for a cycle that was abandoned."""
    for vm in vms:
        ctx.step(f"restore.{vm}", f"vm:{vm}", "start-vm", Disruption.VM_RESTART.value,
                 lambda: ctx.ops.start_vm(vm, ctx.run.timeouts.vm_start).summary,
                 {"why": "its host's cycle was abandoned"})


def safe_host(ctx: UnitContext, name: str) -> Host | None:
    """The host now, or None when it cannot be read: deciding how to put a host back must not
    fail on one more engine error."""
    try:
        return ctx.ops.host(name)
    except ReconcilerError as err:
        log.warning("apply.host_unreadable", host=name, error=str(err))
        return None


def recover(hosts: Sequence[str], vms: Sequence[str], ctx: UnitContext) -> None:
    """Activate hosts and start VMs that a dead run took down and never brought back.

    A host still installing is awaited first; a host in any other state than maintenance
    (non_responsive, install_failed, ...) is reported degraded and left for a person.
    """
    run, ops, timeouts = ctx.run, ctx.ops, ctx.run.timeouts
    for name in hosts:
        host = safe_host(ctx, name)
        if host is None or host.status == "up":
            continue
        key = f"host:{name}"
        if host.status in _INSTALLING:
            step = ctx.step("recover.install", key, "install", _REBOOT,
                            lambda: ops.install_host(name, reboot=True, activate=False,
                                                     timeout=timeouts.install).summary,
                            {"why": "an interrupted run left it installing"})
            if not step.ok:
                run.ledger.degrade(name, f"left installing by an interrupted run: {step.error}")
                continue
        elif host.status not in _HEALTHY_DOWN | _ACTIVATING:
            run.ledger.degrade(name, f"an interrupted run took it down and it is "
                                     f"{host.status}; not touched")
            continue
        step = ctx.step("recover.activate", key, "activate", _REBOOT,
                        lambda: ops.activate_host(name, timeouts.activate).summary,
                        {"why": "an interrupted run left it out of up"})
        if not step.ok:
            run.ledger.degrade(name, f"activating it again failed: {step.error}")
    for name in vms:
        try:
            vm = ops.vm(name)
        except ReconcilerError as err:
            log.warning("apply.vm_unreadable", vm=name, error=str(err))
            continue
        if vm is None or vm.status != "down":
            continue
        ctx.step("recover.start", f"vm:{name}", "start-vm", Disruption.VM_RESTART.value,
                 lambda: ops.start_vm(name, timeouts.vm_start).summary,
                 {"why": "an interrupted run stopped it"})


__all__ = ["CycleEnd", "recover", "restart_vms", "run_cycle", "safe_host"]
