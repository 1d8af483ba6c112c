"""A VM's passthrough: pin it to the device's host, detach what the spec no longer names, attach
what it names (with the IOMMU-group siblings the engine brings along). Every change here needs the
VM down: the engine refuses host-device changes while it runs."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import replace

from reconciler.model.facts import Host, HostDevice, Vm
from reconciler.plan import checks
from reconciler.plan.actions import (Action, AttachHostDevice, DetachHostDevice, PinVm, Reason,
                                     Verification)
from reconciler.plan.expand import HostDesired
from reconciler.plan.inputs import Inputs
from reconciler.plan.vms.changes import VmChanges
from reconciler.plan.vms.handoff import NO_TAKEOVER, Takeover, kept_devices
from reconciler.spec.model import PassthroughSpec


def passthrough_changes(inputs: Inputs, vm: Vm, spec: PassthroughSpec, reason: Reason,
                        host_desired: Mapping[str, HostDesired],
                        takeover: Takeover = NO_TAKEOVER) -> VmChanges:
    host = inputs.hosts.get(spec.host)
    if host is None:
        return VmChanges(blockers=(f"passthrough host {spec.host} does not exist"
                                   + checks.did_you_mean(spec.host, inputs.hosts),))
    devices = {d.name: d for d in host.devices}
    missing = tuple(f"device {name} does not exist on host {spec.host}"
                    + checks.did_you_mean(name, devices)
                    for name in spec.devices if name not in devices)
    if missing:
        return VmChanges(blockers=missing)
    # A device the VM already holds on its pinned host, and that the plan does not attach again,
    # stays as it is: a risk found on it is a warning with its fix, never a blocker.
    kept = kept_devices(vm, host.name, spec.devices)
    desired = host_desired.get(spec.host)
    problems = _host_problems(vm, host, [devices[n] for n in spec.devices if n not in kept],
                              desired, takeover.settled) + takeover.problems
    if problems:
        return VmChanges(blockers=problems)
    risks = tuple(f"attached today and left as it is, but {p}" for p in _host_problems(
        vm, host, [devices[n] for n in spec.devices if n in kept], desired))
    changes = _device_changes(inputs, vm, host, devices, spec.devices, reason, takeover.givers)
    return replace(changes, warnings=changes.warnings + risks) if risks else changes


def _host_problems(vm: Vm, host: Host, wanted: list[HostDevice], desired: HostDesired | None,
                   settled: Set[str] = frozenset()) -> tuple[str, ...]:
    if not wanted:
        return ()
    problems = checks.passthrough_device_problems(vm.name, host, wanted, desired, settled)
    iommu_coming = bool(desired and desired.kernel and desired.kernel.iommu)
    if not host.device_passthrough and not iommu_coming:
        problems.append(f"host {host.name} has device passthrough (IOMMU) disabled; set "
                        "kernel.iommu: true on a profile selecting it")
    return tuple(problems)


def _device_changes(inputs: Inputs, vm: Vm, host: Host, devices: Mapping[str, HostDevice],
                    names: Sequence[str], reason: Reason, givers: Set[str]) -> VmChanges:
    key = f"vm:{vm.name}"
    actions: list[Action] = []
    differences: list[str] = []
    notes: list[str] = []
    current = {d.name for d in vm.host_devices if not d.placeholder}
    if vm.pinned_hosts != (host.name,):
        before = ",".join(vm.pinned_hosts) or None
        differences.append(f"pin to host {host.name} (was {before or 'not pinned'})")
        actions.append(_pin(vm, host.name, before, reason))
        current = set()               # the engine drops the VM's host devices on a new pin
    want = list(dict.fromkeys(names))
    for name in sorted(current - set(want)):
        differences.append(f"detach {name}")
        actions.append(DetachHostDevice(
            target=key, before=name, after=None, reason=Reason.PRUNE,
            description=f"detach host device {name} (not in the spec)",
            verify=(Verification(key, "host_devices", "not-contains", name),),
            host=host.name, device=name))
    for name in want:
        if name in current:
            continue
        # A VM giving the device up in this plan (planned before this one) no longer holds it.
        sharing = [v for v in inputs.device_holders.get((host.name, name), ())
                   if v != vm.name and v not in givers]
        if sharing:
            # The engine lets several down VMs hold one device; only one of them can run.
            notes.append(f"device {name} on host {host.name} is also attached to VM(s) "
                         f"{', '.join(sharing)} (down); only one of them can run at a time")
        siblings = _group_siblings(devices, devices[name], want)
        differences.append(f"attach {name}{' with ' + ', '.join(siblings) if siblings else ''}")
        actions.append(_attach(key, host.name, devices[name], siblings, reason))
    return VmChanges(actions=tuple(actions), differences=tuple(differences), notes=tuple(notes))


def _pin(vm: Vm, host: str, before: str | None, reason: Reason) -> PinVm:
    key = f"vm:{vm.name}"
    note = (" (the engine drops the VM's host devices when the pinned host changes)"
            if vm.host_devices else "")
    return PinVm(target=key, before=before, after=host, reason=reason,
                 description=f"pin VM {vm.name} to host {host}{note}",
                 verify=(Verification(key, "pinned_hosts", "eq", host),), host=host)


def _attach(key: str, host: str, device: HostDevice, siblings: list[str],
            reason: Reason) -> AttachHostDevice:
    # The engine attaches the device's whole IOMMU group; the reviewer sees what follows.
    follow = "follows as a placeholder" if len(siblings) == 1 else "follow as placeholders"
    with_siblings = (f" (IOMMU group {device.iommu_group}: {', '.join(siblings)} {follow})"
                     if siblings else "")
    return AttachHostDevice(
        target=key, before=None, after=device.name, reason=reason,
        description=f"attach host device {device.name} from host {host}{with_siblings}",
        verify=(Verification(key, "host_devices", "contains", device.name),),
        host=host, device=device.name)


def _group_siblings(devices: Mapping[str, HostDevice], device: HostDevice,
                    named: Iterable[str]) -> list[str]:
    """The other members of `device`'s IOMMU group that the spec does not name."""
    if device.iommu_group is None:
        return []
    skip = set(named)
    return sorted(d.name for d in devices.values()
                  if d.iommu_group == device.iommu_group and d.name not in skip
                  and d.name != device.name)
