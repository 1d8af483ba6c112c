"""Opt-in pruning of GPU use that no spec mentions (the spec's `prune` key).

Runs after the VM phase has reported `unmanaged` items. For every VM that no spec names and whose
name matches `prune.vms`:

- `unmanagedVgpus`: one RemoveMediatedDevice per vGPU. The engine accepts it while the VM runs and
  it takes effect at the VM's next start; the VM is never stopped or restarted for it.
- `unmanagedHostDevices`: one DetachHostDevice per GPU function (NVIDIA or vGPU-capable) attached
  to the VM and not a placeholder, only while the VM is down (the engine refuses otherwise). On a
  running VM the item stays `unmanaged` and says it will be detached once the VM is down.

Pruned items are replaced by one `pending` item per VM naming what goes; its location is where the
spec declares `prune`. Pruning actions come after every spec VM's actions, by VM name.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase

from reconciler.model.facts import Host, Vm
from reconciler.plan.actions import (Action, DetachHostDevice, Disruption, Reason,
                                     RemoveMediatedDevice, Verification)
from reconciler.plan.result import DriftItem
from reconciler.plan.state import PlanState, is_down
from reconciler.spec.model import PruneSpec

NEXT_START = "takes effect at next start"
DEFERRED = ("; prune: detached once the VM is down (the engine refuses while it runs; the VM is "
            "never stopped for this)")

# Wording of the VM phase's unmanaged items (vm_planning.report_unmanaged), by kind.
_VM_VGPU_PREFIX = "vGPUs "
_VM_HOSTDEV_PREFIX = "GPU host device(s) "
_HOST_DEVICE_MARK = " is used by VM "
_HOST_DEVICE_END = ", which no spec mentions"


@dataclass(frozen=True)
class _Unmanaged:
    """Which VM an unmanaged item is about, and whether it concerns vGPUs or host devices."""

    vm: str
    vgpus: bool


def may_prune(prune: PruneSpec, vm_name: str) -> bool:
    """True when `prune.vms` lets this (unmanaged) VM be pruned; globs match case-sensitively."""
    return any(fnmatchcase(vm_name, pattern) for pattern in prune.vms)


def prune_unmanaged(state: PlanState) -> None:
    """Turn the unmanaged items that `desired.prune` asks to remove into actions (in place)."""
    prune = state.desired.prune
    if not prune.enabled:
        return
    loc = str(prune.location) if prune.location else None
    chosen = {name for name in state.vms
              if name not in state.desired_vms and may_prune(prune, name)}
    pruned_vgpus: set[str] = set()
    pruned_hostdevs: set[str] = set()
    actions: list[Action] = []
    pending: list[DriftItem] = []
    for name in sorted(chosen):
        vm = state.vms[name]
        parts: list[str] = []
        vm_actions: list[Action] = []
        if prune.unmanaged_vgpus and vm.mediated_devices:
            pruned_vgpus.add(name)
            vm_actions.extend(_remove_vgpus(vm, parts))
        if prune.unmanaged_host_devices and is_down(vm):
            detach = _detach_gpus(vm, state.hosts, parts)
            if detach:
                pruned_hostdevs.add(name)
                vm_actions.extend(detach)
        if not vm_actions:
            continue
        for a in vm_actions:
            if isinstance(a, RemoveMediatedDevice):
                state.seat_delta[a.mdev_type] -= 1
        state.depends.add(f"vm:{name}")
        actions.extend(vm_actions)
        pending.append(DriftItem(f"vm:{name}", "pending",
                                 "prune (no spec mentions this VM): " + "; ".join(parts), loc))
    deferred = {name for name in chosen
                if prune.unmanaged_host_devices and not is_down(state.vms[name])}
    drift: list[DriftItem] = []
    for item in state.drift:
        about = _classify(item) if item.status == "unmanaged" else None
        if about is None or about.vm not in chosen:
            drift.append(item)
        elif about.vgpus and about.vm in pruned_vgpus:
            continue
        elif not about.vgpus and about.vm in pruned_hostdevs:
            continue
        elif not about.vgpus and about.vm in deferred:
            drift.append(replace(item, message=item.message + DEFERRED, location=loc))
        else:
            drift.append(item)
    state.drift[:] = drift + pending
    state.vm_actions.extend(actions)


def _remove_vgpus(vm: Vm, parts: list[str]) -> list[Action]:
    key = f"vm:{vm.name}"
    note = None if is_down(vm) else NEXT_START
    out: list[Action] = []
    for m in sorted(vm.mediated_devices, key=lambda m: m.id):
        parts.append(f"remove vGPU {m.mdev_type} {m.id}"
                     + ("" if note is None else f" ({NEXT_START}; the VM keeps running)"))
        out.append(RemoveMediatedDevice(
            target=key, before=m.mdev_type, after=None, disruption=Disruption.VM_RESTART,
            reason=Reason.PRUNE,
            description=f"remove mediated device {m.id} ({m.mdev_type}; no spec mentions VM "
                        f"{vm.name})",
            verify=(Verification(key, "mediated_devices", "not-contains", m.id),),
            note=note, device_id=m.id, mdev_type=m.mdev_type))
    return out


def _detach_gpus(vm: Vm, hosts: dict[str, Host], parts: list[str]) -> list[Action]:
    """Detach the VM's GPU functions; other devices (e.g. a NIC) are not this tool's to remove."""
    key = f"vm:{vm.name}"
    out: list[Action] = []
    for d in sorted(vm.host_devices, key=lambda d: (d.host or "", d.name)):
        host = hosts.get(d.host or "")
        dev = host.device(d.name) if host is not None else None
        if d.placeholder or dev is None or not (dev.vendor_id == "10de" or dev.mdev_types):
            continue
        assert host is not None
        parts.append(f"detach {d.name} from host {host.name}")
        out.append(DetachHostDevice(
            target=key, before=d.name, after=None, disruption=Disruption.VM_RESTART,
            reason=Reason.PRUNE,
            description=f"detach host device {d.name} of host {host.name} (no spec mentions VM "
                        f"{vm.name})",
            verify=(Verification(key, "host_devices", "not-contains", d.name),),
            host=host.name, device=d.name))
    return out


def _classify(item: DriftItem) -> _Unmanaged | None:
    kind, _, name = item.key.partition(":")
    if kind == "vm":
        if item.message.startswith(_VM_VGPU_PREFIX):
            return _Unmanaged(name, vgpus=True)
        if item.message.startswith(_VM_HOSTDEV_PREFIX):
            return _Unmanaged(name, vgpus=False)
        return None
    _, mark, rest = item.message.partition(_HOST_DEVICE_MARK)
    vm, end, _ = rest.partition(_HOST_DEVICE_END)
    return _Unmanaged(vm, vgpus=False) if mark and end else None
