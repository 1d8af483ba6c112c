"""Plan-time checks that need observed state. Each returns messages a user can act on; the planner
turns them into `blocked` drift items carrying the spec location.

IOMMU-group siblings rule: the engine attaches every device of a passed-through device's IOMMU group
(the ones not named become placeholders), and at VM start libvirt detaches them all from the host.
So a sibling the spec does not name is fine when it is free or already ours, bound to nothing,
vfio-pci, pci-stub, a PCI bridge driver (pcieport: VFIO accepts bridges in a group) or an HDMI
audio driver (the GPU's own audio function, which goes with the GPU). It blocks when it is used by
another VM, bound to nvidia/nouveau with nothing keeping the host off it, or bound to any other host
driver (storage, network, USB...): detaching it would take that function away from the host.
"""
from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable

from reconciler.model.facts import Host, HostDevice, ProbeFacts
from reconciler.plan.expand import HostDesired

GPU_HOST_DRIVERS = frozenset({"nvidia", "nouveau"})
HARMLESS_SIBLING_DRIVERS = frozenset({"vfio-pci", "vfio_pci", "pci-stub", "pci_stub", "pcieport",
                                      "snd_hda_intel"})
VGPU_MODULE = "nvidia_vgpu_vfio"
VGPU_SERVICE = "nvidia-vgpu-mgr.service"


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"


def host_driver_kept_off(device: HostDevice, desired: HostDesired | None) -> bool:
    """True when the desired host settings keep the GPU driver `device` is bound to off it."""
    if desired is None:
        return False
    if device.pci_id and device.pci_id in desired.pci_stub_ids:
        return True
    return device.driver == "nouveau" and desired.nouveau_blacklisted


def passthrough_device_problems(vm: str, host: Host, wanted: list[HostDevice],
                                desired: HostDesired | None,
                                settled: Collection[str] = ()) -> list[str]:
    """Ownership, host-driver and IOMMU-group problems of passing `wanted` to `vm`.

    `settled`: devices whose use by another VM is not checked here, because that VM gives them
    up in this plan (the handoff rules in vms/handoff.py decide, and say so when it cannot)."""
    problems: list[str] = []
    names = {d.name for d in wanted}
    groups = {d.iommu_group for d in wanted if d.iommu_group is not None}
    for dev in wanted:
        if dev.vm and dev.vm != vm and dev.name not in settled:
            problems.append(f"device {dev.name} on host {host.name} is attached to VM {dev.vm}; "
                            f"detach it there first or pick another device")
        if dev.driver in GPU_HOST_DRIVERS and not host_driver_kept_off(dev, desired):
            problems.append(_driver_message(dev, host))
    for dev in host.devices:
        if dev.iommu_group not in groups or dev.name in names:
            continue
        group = dev.iommu_group
        if dev.vm and dev.vm != vm and dev.name not in settled:
            problems.append(f"device {dev.name} shares IOMMU group {group} with the requested "
                            f"device(s) and is used by VM {dev.vm}; the engine attaches a whole "
                            "group to one VM, so free it first")
        elif dev.driver in GPU_HOST_DRIVERS:
            if not host_driver_kept_off(dev, desired):
                problems.append(f"IOMMU-group sibling: {_driver_message(dev, host)}")
        elif dev.driver and dev.driver not in HARMLESS_SIBLING_DRIVERS:
            problems.append(f"device {dev.name} shares IOMMU group {group} with the requested "
                            f"device(s) and is bound to host driver {dev.driver}; passing the group "
                            "through would take it from the host (move the card to another slot or "
                            "add the device to the spec if that is intended)")
    return problems


def _driver_message(dev: HostDevice, host: Host) -> str:
    if dev.driver == "nouveau":
        fix = (f"add {dev.pci_id} to kernel.pciStub or set kernel.blacklistNouveau"
               if dev.pci_id else "set kernel.blacklistNouveau")
    else:
        fix = (f"add {dev.pci_id} to kernel.pciStub" if dev.pci_id
               else "reserve it with kernel.pciStub")
    return (f"device {dev.name} on host {host.name} is bound to the host driver {dev.driver} and "
            f"nothing keeps the host off it; {fix} on a profile selecting {host.name}")


def vgpu_manager_problem(policy: str, probe: ProbeFacts | None) -> tuple[str | None, str | None]:
    """(blocker, note) for `vgpu.manager`. We never install or remove licensed software."""
    if policy == "ignore":
        return None, None
    if probe is None or not probe.ok:
        why = probe.reason if probe is not None and probe.reason else "host not probed"
        return None, f"vGPU manager state unknown ({why}); vgpu.manager: {policy} not checked"
    loaded = VGPU_MODULE in probe.loaded_modules
    active = probe.vgpu_manager_service == "active"
    if policy == "required" and not (loaded and active):
        missing = []
        if not loaded:
            missing.append(f"module {VGPU_MODULE} not loaded")
        if not active:
            missing.append(f"{VGPU_SERVICE} is {probe.vgpu_manager_service or 'not found'}")
        return ("vgpu.manager is required but " + ", ".join(missing) + "; install the NVIDIA vGPU "
                "manager (licensed software is never installed by us)"), None
    if policy == "absent" and (loaded or active):
        return ("vgpu.manager is absent but the NVIDIA vGPU manager is present on the host; "
                "remove it by hand (we never uninstall it)"), None
    return None, None


def per_vf_interface(probe: ProbeFacts | None) -> tuple[str, ...]:
    """PCI functions that use the per-VF vGPU interface (vendor-specific VFIO, no mdev bus)."""
    if probe is None or not probe.ok:
        return ()
    mdev_parents = {t.parent for t in probe.mdev_types}
    return tuple(sorted(f.address for f in probe.pci_functions
                        if f.creatable_vgpu_types and f.address not in mdev_parents))
