"""Stopping and starting VMs: what the host phase adds around a host cycle and the VM phase around
device changes (both only where a VM's `restart: allowed` lets us)."""
from __future__ import annotations

from reconciler.model.facts import Vm
from reconciler.plan.actions import Reason, StartVm, StopVm, Verification
from reconciler.spec.model import VmSpec


def stop_vm(vm: Vm, spec: VmSpec, why: str, *, reason: Reason = Reason.SPEC_CHANGE,
            wave: int | None = None) -> StopVm:
    key = f"vm:{vm.name}"
    return StopVm(target=key, before=vm.status, after="down", reason=reason,
                  description=f"stop VM {vm.name} ({why}; restart: {spec.restart})",
                  verify=(Verification(key, "status", "eq", "down"),), wave=wave, host=vm.host)


def start_vm(vm: Vm, spec: VmSpec, reason: Reason, why: str) -> StartVm:
    key = f"vm:{vm.name}"
    # A passthrough VM starts where its devices are, whatever host it ran on before.
    host = spec.passthrough.host if spec.passthrough else vm.host
    return StartVm(target=key, before="down", after="up", reason=reason,
                   description=f"start VM {vm.name} ({why})",
                   verify=(Verification(key, "status", "eq", "up"),), host=host)
