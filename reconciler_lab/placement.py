"""Where the scheduler puts a VM's vGPU instances on one host (MDevicePolicyUnit and the host's
vgpu_placement): one vGPU type per physical GPU; `consolidated` fills a GPU first, `separated`
spreads the instances."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from reconciler_lab.records import LabDevice


class Vm(Protocol):
    """What placement reads of the engine's VM: its mediated devices' spec params."""

    mdevs: dict[str, dict[str, str]]


class Host(Protocol):
    """What placement reads of the engine's host: its vgpu_placement policy."""

    vgpu_placement: str


def allocate_vgpus(vm: Vm, host: Host, devices: Mapping[str, LabDevice],
                   in_use: Mapping[str, list[Any]]) -> list[list[str]] | None:
    """[type, GPU name] per instance of `vm`, or None if the host lacks capacity. `in_use` maps a
    GPU to [the type it runs, instances running]."""
    usage = {k: list(v) for k, v in in_use.items()}
    placed: list[list[str]] = []
    for params in vm.mdevs.values():
        mtype = params["mdevType"]
        options: list[tuple[int, str]] = []
        for dev in devices.values():
            limit = next((t.max_instances for t in dev.mdev_types if t.name == mtype), None)
            if limit is None:
                continue
            used = usage.get(dev.name)
            count = used[1] if used and used[1] else 0
            if count and used and used[0] != mtype:
                continue
            if count < limit:
                options.append((count, dev.name))
        if not options:
            return None
        if host.vgpu_placement == "separated":
            count, name = min(options, key=lambda o: (o[0], o[1]))
        else:
            count, name = min(options, key=lambda o: (-o[0], o[1]))
        usage[name] = [mtype, count + 1]
        placed.append([mtype, name])
    return placed


__all__ = ["allocate_vgpus"]
