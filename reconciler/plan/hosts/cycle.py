"""Whether a host that needs a reboot gets a host cycle, and the cycle itself.

A host is cycled when its rollout allows reboots and every VM that holds it (running and unable to
migrate) may be stopped, and could start again after the cycle (the VM phase says when one could
not, and the host is planned again without its cycle); otherwise the reason is reported and nothing
reboots.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.model.facts import Host, Vm
from reconciler.plan.actions import HostCycle, Reason, Verification
from reconciler.plan.expand import HostDesired
from reconciler.plan.hosts.changes import HostChanges
from reconciler.plan.inputs import Inputs, is_down

# The engine cycles a host only from these states.
CYCLE_STATES = frozenset({"up", "maintenance"})
STEPS = ("deactivate", "install", "activate", "verify")


@dataclass(frozen=True)
class CycleDecision:
    cycle: HostCycle | None = None
    stop_vms: tuple[Vm, ...] = ()          # pinned VMs stopped before the cycle
    differences: tuple[str, ...] = ()      # why a needed cycle does not happen


def cycle_state_problem(host: Host, desired: HostDesired, changes: HostChanges) -> tuple[str, ...]:
    if changes.needs_boot and host.status not in CYCLE_STATES and desired.reboot == "allowed":
        return (f"host {host.name} is {host.status}; a host cycle needs it up or in maintenance",)
    return ()


def decide_cycle(inputs: Inputs, host: Host, desired: HostDesired, changes: HostChanges,
                 reason: Reason, no_restart: Mapping[str, str] | None = None) -> CycleDecision:
    """`no_restart`: VM -> why it could not start again after this host's cycle (found by the VM
    phase when a cycle stopped it); such a VM holds the host."""
    if not changes.needs_boot:
        return CycleDecision()
    if desired.reboot == "never":
        return CycleDecision(differences=("needs a reboot (" + "; ".join(changes.needs_boot) +
                                          "), but rollout.reboot is never",))
    held = pinned_vms(inputs, host)
    waiting = [v for v in held if not _may_stop(inputs, v)]
    if waiting:
        return CycleDecision(differences=(
            "held: VM(s) " + ", ".join(f"{v.name} ({why_unmovable(v)})" for v in waiting)
            + " run here and cannot migrate; stop them or allow restarts (restart: allowed) to "
            "let the host reboot",))
    stuck = [v for v in held if no_restart and v.name in no_restart]
    if stuck:
        assert no_restart is not None
        return CycleDecision(differences=tuple(
            f"held: VM {v.name} runs here and cannot migrate ({why_unmovable(v)}), and once "
            f"stopped for the cycle it could not start again: {no_restart[v.name]}"
            for v in stuck))
    return CycleDecision(cycle=host_cycle(host, changes, reason), stop_vms=held)


def pinned_vms(inputs: Inputs, host: Host) -> tuple[Vm, ...]:
    """Running VMs on `host` that cannot migrate away (pinned, holding host devices, or running
    vGPUs: the engine does not live-migrate a VM with mediated devices)."""
    out = [vm for vm in inputs.vms_on_host.get(host.name, ()) if not is_down(vm) and (
        vm.affinity == "pinned" or any(not d.placeholder for d in vm.host_devices)
        or vm.mediated_devices)]
    return tuple(sorted(out, key=lambda v: v.name))


def why_unmovable(vm: Vm) -> str:
    """Why the engine will not migrate a running VM off its host, in a few words."""
    if vm.affinity == "pinned":
        return "pinned to it"
    if any(not d.placeholder for d in vm.host_devices):
        return "holds its host devices"
    return "runs a vGPU"


def _may_stop(inputs: Inputs, vm: Vm) -> bool:
    spec = inputs.desired_vms.get(vm.name)
    return spec is not None and spec.restart == "allowed"


def host_cycle(host: Host, changes: HostChanges, reason: Reason) -> HostCycle:
    key = f"host:{host.name}"
    note: str | None
    if changes.cmdline_edit:
        note = None
    elif changes.kernel_unbooted:
        note = "configured but not booted"
    else:
        note = "boots the new initramfs / unloads blacklisted modules"
    verify = [Verification(key, "status", "eq", "up"),
              Verification(key, "reinstallation_required", "eq", False)]
    verify += [Verification(key, "booted_cmdline", "contains", t) for t in changes.expect_args]
    verify += [Verification(key, "booted_cmdline", "not-contains", t)
               for t in changes.gone_tokens]
    verify += [Verification(key, "probe.loaded_modules", "not-contains", m)
               for m in changes.modules_absent]
    return HostCycle(
        target=key, before=host.status, after="up", reason=reason,
        description="host cycle: " + " -> ".join(STEPS) + (f" ({note})" if note else ""),
        verify=tuple(verify), note=note, steps=STEPS, expect_args=changes.expect_args,
        expect_absent=changes.expect_absent, expect_modules_absent=changes.modules_absent,
        cmdline_edit=changes.cmdline_edit)
