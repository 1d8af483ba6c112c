"""Opt-in pruning of GPU use that no spec mentions (the spec's `prune` key).

Takes the `unmanaged` items (unmanaged.py) and returns the actions, with what is left of the items.
For every VM that no spec names and whose name matches `prune.vms`:

- `unmanagedVgpus`: one RemoveMediatedDevice per vGPU. The engine accepts it while the VM runs and
  it takes effect at the VM's next start; the VM is never stopped or restarted for it.
- `unmanagedHostDevices`: one DetachHostDevice per GPU function (NVIDIA or vGPU-capable) attached
  to the VM and not a placeholder, only while the VM is down (the engine refuses otherwise). On a
  running VM the item stays `unmanaged` and says it will be detached once the VM is down.

Pruned items are replaced by one `pending` item per VM naming what goes; its location is where the
spec declares `prune`. Pruning actions come after every spec VM's actions, by VM name.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase

from reconciler.model.facts import Host, Vm
from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import (Action, DetachHostDevice, Reason, RemoveMediatedDevice,
                                     Verification)
from reconciler.plan.inputs import Inputs, is_down
from reconciler.plan.result import DriftItem
from reconciler.plan.unmanaged import UnmanagedUse
from reconciler.spec.model import PruneSpec

NEXT_START = "takes effect at next start"
DEFERRED = ("; prune: detached once the VM is down (the engine refuses while it runs; the VM is "
            "never stopped for this)")


@dataclass(frozen=True)
class PrunePhase:
    actions: tuple[Action, ...] = ()
    drift: tuple[DriftItem, ...] = ()     # unmanaged items left, then one pending item per VM
    depends: frozenset[str] = frozenset()
    seat_delta: Mapping[str, int] = field(default_factory=dict)


def may_prune(prune: PruneSpec, vm_name: str) -> bool:
    """True when `prune.vms` lets this (unmanaged) VM be pruned; globs match case-sensitively."""
    return any(fnmatchcase(vm_name, pattern) for pattern in prune.vms)


def prune(inputs: Inputs, unmanaged: Sequence[UnmanagedUse]) -> PrunePhase:
    """Turn the unmanaged items that `desired.prune` asks to remove into actions."""
    spec = inputs.desired.prune
    if not spec.enabled:
        return PrunePhase(drift=tuple(u.item for u in unmanaged))
    loc = str(spec.location) if spec.location else None
    chosen = {name for name in inputs.vms
              if name not in inputs.desired_vms and may_prune(spec, name)}
    pruned_vgpus: set[str] = set()
    pruned_hostdevs: set[str] = set()
    actions: list[Action] = []
    pending: list[DriftItem] = []
    for name in sorted(chosen):
        vm = inputs.vms[name]
        removals: list[tuple[Action, str]] = []
        if spec.unmanaged_vgpus and vm.mediated_devices:
            pruned_vgpus.add(name)
            removals += _remove_vgpus(vm)
        if spec.unmanaged_host_devices and is_down(vm):
            detach = _detach_gpus(vm, inputs.hosts)
            if detach:
                pruned_hostdevs.add(name)
                removals += detach
        if not removals:
            continue
        actions.extend(a for a, _ in removals)
        pending.append(DriftItem(f"vm:{name}", DriftStatus.PENDING,
                                 "prune (no spec mentions this VM): "
                                 + "; ".join(what for _, what in removals), loc))
    deferred = {name for name in chosen
                if spec.unmanaged_host_devices and not is_down(inputs.vms[name])}
    left: list[DriftItem] = []
    for use in unmanaged:
        if use.vm not in chosen:
            left.append(use.item)
        elif use.vm in (pruned_vgpus if use.vgpus else pruned_hostdevs):
            continue
        elif not use.vgpus and use.vm in deferred:
            left.append(replace(use.item, message=use.item.message + DEFERRED, location=loc))
        else:
            left.append(use.item)
    removed = Counter(a.mdev_type for a in actions if isinstance(a, RemoveMediatedDevice))
    return PrunePhase(actions=tuple(actions), drift=tuple(left + pending),
                      depends=frozenset(a.target for a in actions),
                      seat_delta={t: -n for t, n in removed.items()})


def released_by_prune(inputs: Inputs) -> Mapping[tuple[str, str], str]:
    """(host, device) -> the VM pruning frees it from in this plan: the GPU functions it detaches
    from down VMs no spec names, and the rest of their IOMMU group once nothing of it stays
    attached. The VM phase counts them as free for spec VMs: the engine attaches a device to one
    VM while a down VM's configuration still holds it, and the pruned VM does not run with it."""
    spec = inputs.desired.prune
    if not (spec.enabled and spec.unmanaged_host_devices):
        return {}
    out: dict[tuple[str, str], str] = {}
    for name in sorted(inputs.vms):
        vm = inputs.vms[name]
        if name in inputs.desired_vms or not may_prune(spec, name) or not is_down(vm):
            continue
        detached = {(a.host, a.device) for a, _ in _detach_gpus(vm, inputs.hosts)
                    if isinstance(a, DetachHostDevice)}
        if not detached:
            continue
        held = [(d, _group_key(inputs.hosts[d.host], d.name)) for d in vm.host_devices
                if d.host is not None and d.host in inputs.hosts]
        # The engine drops a group once every device of it is a placeholder.
        kept = {(d.host, group) for d, group in held
                if not d.placeholder and (d.host, d.name) not in detached}
        out.update({(d.host, d.name): name for d, group in held
                    if d.host is not None and (d.host, group) not in kept})
    return out


def _group_key(host: Host, device: str) -> int | str:
    """A device's IOMMU group (the device itself when it has none)."""
    dev = host.device(device)
    return dev.iommu_group if dev is not None and dev.iommu_group is not None else device


def _remove_vgpus(vm: Vm) -> list[tuple[Action, str]]:
    """One removal per vGPU, each with what it says in the VM's pending item."""
    key = f"vm:{vm.name}"
    note = None if is_down(vm) else NEXT_START
    out: list[tuple[Action, str]] = []
    for m in sorted(vm.mediated_devices, key=lambda m: m.id):
        what = (f"remove vGPU {m.mdev_type} {m.id}"
                + ("" if note is None else f" ({NEXT_START}; the VM keeps running)"))
        out.append((RemoveMediatedDevice(
            target=key, before=m.mdev_type, after=None, reason=Reason.PRUNE,
            description=f"remove mediated device {m.id} ({m.mdev_type}; no spec mentions VM "
                        f"{vm.name})",
            verify=(Verification(key, "mediated_devices", "not-contains", m.id),),
            note=note, device_id=m.id, mdev_type=m.mdev_type), what))
    return out


def _detach_gpus(vm: Vm, hosts: Mapping[str, Host]) -> list[tuple[Action, str]]:
    """Detach the VM's GPU functions; other devices (e.g. a NIC) are not this tool's to remove."""
    key = f"vm:{vm.name}"
    out: list[tuple[Action, str]] = []
    for d in sorted(vm.host_devices, key=lambda d: (d.host or "", d.name)):
        host = hosts.get(d.host or "")
        dev = host.device(d.name) if host is not None else None
        if d.placeholder or dev is None or not (dev.vendor_id == "10de" or dev.mdev_types):
            continue
        assert host is not None
        out.append((DetachHostDevice(
            target=key, before=d.name, after=None, reason=Reason.PRUNE,
            description=f"detach host device {d.name} of host {host.name} (no spec mentions VM "
                        f"{vm.name})",
            verify=(Verification(key, "host_devices", "not-contains", d.name),),
            host=host.name, device=d.name), f"detach {d.name} from host {host.name}"))
    return out
