"""Which VM sits on which physical GPU.

vGPU: vdsm creates each mdev with the UUID of the VM's mediated device. The engine writes that id
as the `<hostdev type='mdev'><source><address uuid=.../>` of the domain XML (ovirt-engine
LibvirtVmXmlBuilder.writeVGpu, `mdev.getDeviceId()`; the REST `VmMediatedDevice.id` is the same
device id, BackendMdevHelper), and vdsm's hostdevice.setup_device passes that address's uuid to
hostdev.spawn_mdev, which has supervdsm write it into the type's `create` file (vdsm
lib/vdsm/virt/vmdevices/hostdevice.py, lib/vdsm/common/hostdev.py, supervdsm_api/virt.py
mdev_create). So an mdev UUID in sysfs equals a VM's mediated device id. Before engine 4.2.6
vdsm named the mdev of the `mdev_type` custom property itself, as uuid3 of a fixed namespace and
the VM id (removed in vdsm commit e9cd7230); VMs still carrying that property are matched that way.
nvidia-smi's `MDEV UUID` / `VM Name` pair is the last resort (and the only one on vendor-VFIO
hosts, where vGPUs have no mdev).

Passthrough: the VM's host devices (engine), non-placeholder, on that host; the engine's
`HostDevice.vm` names the holder only while it runs.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.model.facts import NvidiaVgpu, Vm

# vdsm's namespace for mdev UUIDs of the legacy `mdev_type` property (a constant, not code).
LEGACY_MDEV_NAMESPACE = uuid.UUID("8524b17c-f0ca-44a5-9ce4-66fe261e5986")


def legacy_mdev_uuid(vm_id: str) -> str:
    return str(uuid.uuid3(LEGACY_MDEV_NAMESPACE, vm_id))


@dataclass(frozen=True)
class Owner:
    vm: Vm | None
    via: str                             # mdev | mdev-legacy | nvidia-smi
    name: str                            # the VM's name, or the name nvidia-smi printed


class MdevOwners:
    """mdev UUID -> the VM it belongs to."""

    def __init__(self, vms: Iterable[Vm], smi_vgpus: Iterable[NvidiaVgpu] = ()) -> None:
        self._by_id: dict[str, Vm] = {}
        self._legacy: dict[str, Vm] = {}
        self._by_name: dict[str, Vm] = {}
        for vm in vms:
            self._by_name[vm.name] = vm
            for m in vm.mediated_devices:
                self._by_id[m.id.lower()] = vm
            if vm.legacy_mdev_property:
                self._legacy[legacy_mdev_uuid(vm.id)] = vm
        self._smi = {v.mdev_uuid: v for v in smi_vgpus if v.mdev_uuid}

    def vm_named(self, name: str | None) -> Vm | None:
        return self._by_name.get(name) if name else None

    def owner(self, mdev_uuid: str) -> Owner | None:
        key = mdev_uuid.lower()
        if key in self._by_id:
            vm = self._by_id[key]
            return Owner(vm, "mdev", vm.name)
        if key in self._legacy:
            vm = self._legacy[key]
            return Owner(vm, "mdev-legacy", vm.name)
        smi = self._smi.get(key)
        if smi is not None and smi.vm_name:
            return Owner(self._by_name.get(smi.vm_name), "nvidia-smi", smi.vm_name)
        return None
