"""A VM's vGPUs: remove instances of another type or beyond the count, update display and driver
params, add what is missing, and add a VNC console where a vGPU needs one. The engine accepts all
of these while the VM runs; they take effect at its next start."""
from __future__ import annotations

from reconciler.model.facts import MediatedDevice, Vm
from reconciler.plan import checks
from reconciler.plan.actions import (Action, AddMediatedDevice, Reason, RemoveMediatedDevice,
                                     SetConsoleVnc, UpdateMediatedDevice, Verification)
from reconciler.plan.inputs import Inputs
from reconciler.plan.vms.changes import NO_CHANGES, VmChanges
from reconciler.spec.model import VgpuSpec


def vgpu_changes(inputs: Inputs, vm: Vm, want: VgpuSpec, reason: Reason,
                 passthrough_host: str | None = None) -> VmChanges:
    """`passthrough_host`: the host the VM's passthrough pins it to; a pinned VM starts only
    there, so its vGPUs must come from that host's GPUs."""
    if passthrough_host is not None and passthrough_host in inputs.hosts:
        offered = inputs.offered_on_host.get(passthrough_host, frozenset())
        where = (f"of host {passthrough_host}, which the VM's passthrough pins it to (a pinned VM "
                 "takes its vGPUs from its host's GPUs)")
    else:
        offered = inputs.offered_types.get(vm.cluster, frozenset())
        where = f"in cluster {vm.cluster}"
    if want.type not in offered:
        shown = sorted(offered)
        return VmChanges(blockers=(
            f"vGPU type {want.type} is not offered by any GPU {where}"
            + checks.did_you_mean(want.type, shown)
            + (f"; offered: {', '.join(shown[:12])}" if shown else "; no vGPU-capable GPU"),))
    mine = sorted((m for m in vm.mediated_devices if m.mdev_type == want.type),
                  key=lambda m: m.id)
    others = sorted((m for m in vm.mediated_devices if m.mdev_type != want.type),
                    key=lambda m: m.id)
    keep, extra = mine[:want.instances], mine[want.instances:]
    key = f"vm:{vm.name}"
    changed = _removals(key, want, others + extra, reason) + _updates(key, want, keep, reason)
    adds = _additions(key, want, len(keep), reason)
    console = _console(key, vm, want, reason)
    if not (changed or adds or console):
        return NO_CHANGES
    return VmChanges(
        actions=tuple(a for a, _ in changed) + adds + tuple(a for a, _ in console),
        differences=tuple(what for _, what in changed)
        + ((f"add {len(adds)} x vGPU {want.type}",) if adds else ())
        + tuple(what for _, what in console))


def mdev_params(mdev_type: str, nodisplay: bool, driver_params: str | None) -> str:
    """Human form of the full spec params of one mediated device."""
    text = f"{mdev_type} nodisplay={'true' if nodisplay else 'false'}"
    return text + (f" driverParams={driver_params}" if driver_params else "")


# (action, what it changes for the VM's drift item), in the order they are planned.
Changes = list[tuple[Action, str]]


def _removals(key: str, want: VgpuSpec, gone: list[MediatedDevice], reason: Reason) -> Changes:
    out: Changes = []
    for m in gone:
        why = "type changed" if m.mdev_type != want.type else "more instances than wanted"
        out.append((RemoveMediatedDevice(
            target=key, before=m.mdev_type, after=None, reason=reason,
            description=f"remove mediated device {m.id} ({m.mdev_type}, {why})",
            verify=(Verification(key, "mediated_devices", "not-contains", m.id),),
            device_id=m.id, mdev_type=m.mdev_type), f"remove vGPU {m.mdev_type} {m.id} ({why})"))
    return out


def _updates(key: str, want: VgpuSpec, keep: list[MediatedDevice], reason: Reason) -> Changes:
    nodisplay = want.secondary_display == "none"
    out: Changes = []
    for m in keep:
        if m.nodisplay == nodisplay and m.driver_params == want.driver_params:
            continue
        out.append((UpdateMediatedDevice(
            target=key, before=mdev_params(m.mdev_type, m.nodisplay, m.driver_params),
            after=mdev_params(want.type, nodisplay, want.driver_params), reason=reason,
            description=f"update mediated device {m.id} (all spec params)",
            verify=(Verification(key, f"mediated_devices[{m.id}].nodisplay", "eq", nodisplay),),
            device_id=m.id, mdev_type=want.type, nodisplay=nodisplay,
            driver_params=want.driver_params), f"update vGPU {m.id} display/driver params"))
    return out


def _additions(key: str, want: VgpuSpec, kept: int,
               reason: Reason) -> tuple[AddMediatedDevice, ...]:
    nodisplay = want.secondary_display == "none"
    out: list[AddMediatedDevice] = []
    for i in range(kept + 1, want.instances + 1):
        out.append(AddMediatedDevice(
            target=key, before=None, after=mdev_params(want.type, nodisplay, want.driver_params),
            reason=reason, description=f"add vGPU {want.type} (instance {i} of {want.instances})",
            # After instance i (numbered after the kept ones) exactly i of the type exist.
            verify=(Verification(key, f"mediated_devices[mdev_type={want.type}]", "count", i),),
            mdev_type=want.type, nodisplay=nodisplay, driver_params=want.driver_params,
            instance=i))
    return tuple(out)


def _console(key: str, vm: Vm, want: VgpuSpec, reason: Reason) -> Changes:
    protocols = {g.protocol for g in vm.graphics}
    if not (want.secondary_display == "vnc" and want.console == "addVnc" and "spice" in protocols
            and "vnc" not in protocols):
        return []
    return [(SetConsoleVnc(
        target=key, before=",".join(sorted(protocols)), after="spice,vnc", reason=reason,
        description="add a VNC graphics console (SPICE is kept)",
        verify=(Verification(key, "graphics", "contains", "vnc"),)),
        "add a VNC console (SPICE-only VM with a vGPU)")]
