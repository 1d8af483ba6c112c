"""The probe on lab simulated host roots (reconciler_lab.hosts), through LabTransport."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.observe.probe import probe_hosts
from reconciler_lab.transport import LabTransport

from reconciler_lab import fleet, hosts


def test_probe_lab_roots(tmp_path: Path) -> None:
    lab_hosts = [
        fleet.LabHost(name="gpu-01", cluster="gpu", cpu_type=None, cpu_name="Intel Xeon",
                      custom_kernel_cmdline="intel_iommu=on", booted_custom_args="intel_iommu=on",
                      gpus=(fleet.LabGpu("tesla-m60", "0000:86:00.0", 40),)),
        fleet.LabHost(name="gpu-02", cluster="gpu", cpu_type=None, cpu_name="Intel Xeon",
                      gpus=(fleet.LabGpu("h100-pcie", "0000:e1:00.0", 92),)),
    ]
    roots = {h.name: Path(hosts.ensure_host_root(tmp_path / h.name, h)) for h in lab_hosts}
    facts = probe_hosts({n: LabTransport(roots.__getitem__, n) for n in roots}, 2, 60)
    assert [f.host for f in facts] == ["gpu-01", "gpu-02"]
    for f in facts:
        assert f.ok, f.reason
        assert f.proc_cmdline == (roots[f.host] / "proc/cmdline").read_text().strip()
        assert f.boot_entries and all("$" not in e.options for e in f.boot_entries)
        assert f.loaded_modules
        # every emulated command the root provides must yield its fact
        bin_dir = roots[f.host] / "usr/bin"
        if (bin_dir / "lsinitrd").exists():
            assert f.initramfs_blacklist is not None
        if (bin_dir / "systemctl").exists():
            assert f.vgpu_manager_service is not None
        if (bin_dir / "nvidia-smi").exists():
            assert f.nvidia_smi is not None and f.nvidia_smi.driver_version
    one, two = facts
    assert "intel_iommu=on" in one.proc_cmdline.split()
    assert "0000:86:00.0" in {p.address for p in one.pci_functions}
    assert "0000:e1:00.0" in {p.address for p in two.pci_functions}
    gpu = next(p for p in one.pci_functions if p.address == "0000:86:00.0")
    assert gpu.vendor_id == "10de" and gpu.device_id == "13f2"
