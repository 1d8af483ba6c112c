"""What a reboot recomputes from the persisted configuration."""
from __future__ import annotations

import os

import pytest

from reconciler_lab import hosts


def _driver(root, address: str) -> str | None:
    link = root / "sys/bus/pci/devices" / address / "driver"
    return os.path.basename(os.readlink(link)) if link.is_symlink() else None


def test_configured_args_take_effect_after_reboot(host_root, run) -> None:
    root = host_root("t4-01")
    assert "intel_iommu=on" not in hosts.proc_cmdline(root)
    assert list((root / "sys/kernel/iommu_groups").iterdir()) == []
    # what the engine's host deploy runs
    assert run(root, "grubby", "--update-kernel=ALL",
               "--args=intel_iommu=on rdblacklist=nouveau").returncode == 0
    assert "intel_iommu=on" not in hosts.proc_cmdline(root)
    hosts.reboot(root)
    assert hosts.proc_cmdline(root).split()[-2:] == ["intel_iommu=on", "rdblacklist=nouveau"]
    assert sorted(p.name for p in (root / "sys/kernel/iommu_groups/30/devices").iterdir()) == [
        "0000:3b:00.0"]
    assert os.readlink(root / "sys/bus/pci/devices/0000:3b:00.0/iommu_group") == \
        "../../../kernel/iommu_groups/30"
    devices = {d.name: d for d in hosts.host_devices(root)}
    assert devices["pci_0000_3b_00_0"].iommu_group == 30


def test_modprobe_blacklist_needs_dracut(host_root, run) -> None:
    root = host_root("amd-01")
    assert "nouveau" in hosts.loaded_modules(root)
    (root / "etc/modprobe.d/gpu-reconciler.conf").write_text(
        "# managed by gpu-reconciler\nblacklist nouveau\noptions nouveau modeset=0\n")
    hosts.reboot(root)
    # on the root fs but not in the initramfs: nouveau still loads early and binds the GPUs
    assert "nouveau" in hosts.loaded_modules(root)
    assert _driver(root, "0000:e1:00.0") == "nouveau"
    assert run(root, "dracut", "--force").returncode == 0
    hosts.reboot(root)
    assert "nouveau" not in hosts.loaded_modules(root)
    assert _driver(root, "0000:e1:00.0") is None           # no vGPU manager: nothing binds it
    # a blacklist only in the initramfs does not hold either
    (root / "etc/modprobe.d/gpu-reconciler.conf").unlink()
    hosts.reboot(root)
    assert "nouveau" in hosts.loaded_modules(root)


def test_kernel_arg_blacklists(host_root) -> None:
    root = host_root("amd-01")
    for arg in ("rd.driver.blacklist=nouveau", "modprobe.blacklist=nouveau",
                "module_blacklist=snd_hda_intel,nouveau"):
        hosts.grubby_update(root, [arg], [])
        hosts.reboot(root)
        assert "nouveau" not in hosts.loaded_modules(root), arg
        hosts.grubby_update(root, [], [arg.split("=")[0]])
        hosts.reboot(root)
        assert "nouveau" in hosts.loaded_modules(root)


def test_pci_stub_ids(host_root) -> None:
    root = host_root("amd-01")
    hosts.grubby_update(root, ["pci-stub.ids=10de:11b4,10de:0e0a", "rdblacklist=nouveau"], [])
    hosts.reboot(root)
    assert _driver(root, "0000:41:00.0") == "pci-stub"
    assert _driver(root, "0000:41:00.1") == "pci-stub"
    assert "pci_stub" in hosts.loaded_modules(root)
    assert "snd_hda_intel" not in hosts.loaded_modules(root)
    assert sorted(p.name for p in (root / "sys/bus/pci/drivers/pci-stub").iterdir()) == [
        "0000:41:00.0", "0000:41:00.1"]
    devices = {d.name: d for d in hosts.host_devices(root)}
    assert devices["pci_0000_41_00_1"].driver == "pci-stub"


def test_amd_iommu_default_and_off(host_root) -> None:
    root = host_root("amd-01")
    assert (root / "sys/kernel/iommu_groups/44").is_dir()
    hosts.grubby_update(root, ["amd_iommu=off"], [])
    hosts.reboot(root)
    assert list((root / "sys/kernel/iommu_groups").iterdir()) == []
    hosts.grubby_update(root, ["amd_iommu=on"], [])
    hosts.reboot(root)
    assert (root / "sys/kernel/iommu_groups/44").is_dir()


@pytest.mark.slow        # reboots host roots and runs their emulated commands
def test_manager_needs_nouveau_blocked(host_root) -> None:
    root = host_root("m60-01")
    hosts.grubby_update(root, [], ["rdblacklist"])
    (root / "etc/modprobe.d/nvidia-installer-disable-nouveau.conf").unlink()
    hosts.reboot(root)
    # the initramfs still carries the installer's blacklist, the root fs does not
    assert "nouveau" in hosts.loaded_modules(root)
    assert "nvidia" not in hosts.loaded_modules(root)
    assert not (root / "sys/class/mdev_bus").exists()
    devices = {d.name: d for d in hosts.host_devices(root)}
    assert devices["pci_0000_05_00_0"].driver == "nouveau"
    assert not devices["pci_0000_05_00_0"].mdev_types
