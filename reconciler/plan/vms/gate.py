"""The restart policy: which of a VM's changes run now, and around which stop and start.

Host-device changes need the VM down; vGPU and console changes are accepted while it runs and take
effect at its next start. A VM that is down (or stopped for its host's cycle) takes them all now;
a running one is stopped and started again only under `restart: allowed`.
"""
from __future__ import annotations

from dataclasses import replace

from reconciler.model.facts import Vm
from reconciler.plan.actions import Action, Reason
from reconciler.plan.inputs import is_down
from reconciler.plan.power import start_vm, stop_vm
from reconciler.plan.vms.changes import VmChanges
from reconciler.spec.model import VmSpec

NEXT_START = "takes effect at next start"


def gate(vm: Vm, spec: VmSpec, reason: Reason, hostdev: tuple[Action, ...],
         next_start: tuple[Action, ...], stopped_for_cycle: bool) -> VmChanges:
    if stopped_for_cycle:
        return VmChanges(actions=hostdev + next_start + (
            start_vm(vm, spec, reason, "after its host's cycle"),))
    if is_down(vm):
        return VmChanges(actions=hostdev + next_start)
    if spec.restart == "allowed":
        return VmChanges(actions=(stop_vm(vm, spec, "to apply device changes", reason=reason),)
                         + hostdev + next_start
                         + (start_vm(vm, spec, reason, "after device changes"),))
    if spec.restart == "whenDown":
        return VmChanges(
            actions=tuple(replace(a, note=NEXT_START) for a in next_start),
            differences=("host-device changes wait for the VM to be down (restart: whenDown; "
                         "the engine refuses them while it runs)",) if hostdev else ())
    return VmChanges(differences=(f"VM is {vm.status} and restart is never: changes wait until "
                                  "it is down",))
