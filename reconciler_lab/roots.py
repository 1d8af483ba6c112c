"""The one adapter between the engine model and the simulated host root trees.

Roots are materialised lazily: a fleet of 1,000 hosts only gets a tree for the hosts that a
host-level operation (install with reboot, or an explicit `host_root`) touched. When the host
simulation module is not available, the engine derives the booted command line itself.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from reconciler.errors import ReconcilerError
from reconciler_lab.records import LabDevice, LabHost


def _hosts_module() -> ModuleType | None:
    try:
        return importlib.import_module("reconciler_lab.hosts")
    except ModuleNotFoundError as exc:
        if exc.name == "reconciler_lab.hosts":
            return None
        raise


class HostRoots:
    """Host root trees under `base/<host name>`, created on first use."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._mod = _hosts_module()

    @property
    def available(self) -> bool:
        return self._mod is not None and hasattr(self._mod, "ensure_host_root")

    def exists(self, name: str) -> bool:
        return (self.base / name).is_dir()

    def root(self, host: LabHost) -> Path:
        if not self.available:
            raise ReconcilerError("simulated host roots are not available "
                                  "(reconciler_lab.hosts is missing)")
        assert self._mod is not None
        return Path(self._mod.ensure_host_root(self.base / host.name, host))

    def install(self, host: LabHost, remove: list[str], add: list[str]) -> None:
        """What host deploy does to the boot entries: drop the last applied args, add the new."""
        if not self.available:
            return
        assert self._mod is not None
        root = self.root(host)
        self._mod.grubby_update(root, add=add, remove=remove)

    def reboot(self, host: LabHost) -> str | None:
        """Reboot the tree; returns its new /proc/cmdline, or None without host simulation."""
        if not self.available:
            return None
        assert self._mod is not None
        root = self.root(host)
        self._mod.reboot(root)
        return str(self._mod.proc_cmdline(root)).strip()

    def proc_cmdline(self, name: str) -> str | None:
        if not self.available or not self.exists(name):
            return None
        assert self._mod is not None
        return str(self._mod.proc_cmdline(self.base / name)).strip()

    def devices(self, host: LabHost) -> tuple[LabDevice, ...] | None:
        """The device list of a materialised host in its current boot, or None."""
        if not self.available or not self.exists(host.name):
            return None
        assert self._mod is not None
        lister = getattr(self._mod, "host_devices", None)
        return tuple(lister(self.base / host.name)) if lister else None

    def create_mdev(self, host: LabHost, gpu: str, mdev_type: str, uuid: str, vm: str) -> None:
        """vdsm creates a vGPU instance at VM start; mirrored only on materialised roots."""
        if not self.available or not self.exists(host.name):
            return
        assert self._mod is not None
        create = getattr(self._mod, "create_mdev", None)
        if create is not None:
            create(self.base / host.name, self._mod.pci_address(gpu), mdev_type, uuid, vm)

    def remove_mdev(self, host: LabHost, uuid: str) -> None:
        if not self.available or not self.exists(host.name):
            return
        assert self._mod is not None
        remove = getattr(self._mod, "remove_mdev", None)
        if remove is None:
            return
        try:
            remove(self.base / host.name, uuid)
        except ValueError:
            pass   # gone already (the host rebooted: vGPUs do not survive a boot)


def boot_devices(host: LabHost) -> tuple[LabDevice, ...] | None:
    """Devices of a not-materialised fleet host for the args it booted with (IOMMU groups and
    driver bindings depend on the boot), when the fleet module can expand its GPUs."""
    if not host.gpus:
        return None
    from reconciler_lab import fleet as fleet_mod
    expand = getattr(fleet_mod, "expand_host", None)
    return tuple(expand(host).devices) if expand else None
