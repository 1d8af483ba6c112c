"""GPU use no spec mentions: GPU devices of a host used by a VM no spec passes them to, and GPUs or
vGPUs in the configuration of a VM no spec names. Reported as `unmanaged`; removed only when the
spec asks (see prune.py), which is why each item says whose use it is."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from reconciler.model.facts import Host
from reconciler.model.vocab import DriftStatus
from reconciler.plan.inputs import Inputs, is_down
from reconciler.plan.result import DriftItem


@dataclass(frozen=True)
class UnmanagedUse:
    item: DriftItem
    vm: str                # the VM whose use it is
    vgpus: bool            # True: its vGPUs; False: GPU host devices


def report_unmanaged(inputs: Inputs) -> tuple[UnmanagedUse, ...]:
    return _host_devices_in_use(inputs) + _vm_configurations(inputs)


def _host_devices_in_use(inputs: Inputs) -> tuple[UnmanagedUse, ...]:
    out: list[UnmanagedUse] = []
    for host_name in sorted(inputs.hosts):
        for dev in inputs.hosts[host_name].devices:
            if not dev.vm or not (dev.vendor_id == "10de" or dev.mdev_types):
                continue
            spec = inputs.desired_vms.get(dev.vm)
            if spec is not None and spec.passthrough is not None \
                    and spec.passthrough.host == host_name:
                continue
            out.append(UnmanagedUse(DriftItem(
                f"host:{host_name}", DriftStatus.UNMANAGED,
                f"GPU device {dev.name} ({dev.product_name or dev.pci_id or 'unknown'}) is "
                f"used by VM {dev.vm}, which no spec mentions for passthrough", None),
                vm=dev.vm, vgpus=False))
    return tuple(out)


def _vm_configurations(inputs: Inputs) -> tuple[UnmanagedUse, ...]:
    out: list[UnmanagedUse] = []
    for name in sorted(inputs.vms):
        if name in inputs.desired_vms:
            continue
        vm = inputs.vms[name]
        # A VM that is not running holds its GPUs only in its configuration: the host device
        # names no VM then, so the host-level report above cannot see it.
        idle = sorted(f"{d.name} on {d.host}" for d in vm.host_devices
                      if not d.placeholder and d.host in inputs.hosts
                      and _idle_gpu_function(inputs.hosts[d.host], d.name, name))
        if idle:
            out.append(UnmanagedUse(DriftItem(
                f"vm:{name}", DriftStatus.UNMANAGED, "GPU host device(s) " + ", ".join(idle) +
                f" attached (VM is {vm.status}); no spec mentions this VM", None),
                vm=name, vgpus=False))
        if vm.legacy_mdev_property:
            # Never pruned: removing it is an edit of the VM's custom properties, not ours.
            out.append(UnmanagedUse(DriftItem(
                f"vm:{name}", DriftStatus.UNMANAGED,
                f"vGPU as the pre-4.5 custom property mdev_type={vm.legacy_mdev_property}; no "
                "spec mentions this VM", None), vm=name, vgpus=True))
        if vm.mediated_devices:
            types = Counter(m.mdev_type for m in vm.mediated_devices)
            use = " configured (VM is down)" if is_down(vm) else " in use"
            out.append(UnmanagedUse(DriftItem(
                f"vm:{name}", DriftStatus.UNMANAGED, "vGPUs " + ", ".join(
                    f"{n} x {t}" for t, n in sorted(types.items())) +
                f"{use}; no spec mentions this VM", None), vm=name, vgpus=True))
    return tuple(out)


def _idle_gpu_function(host: Host, name: str, vm: str) -> bool:
    """True for a GPU function of `host` held by `vm`'s configuration but not in use by it."""
    dev = host.device(name)
    return dev is not None and (dev.vendor_id == "10de" or bool(dev.mdev_types)) \
        and dev.vm != vm
