"""GPU facts of the probe: the CPU vendor, active mdevs per GPU, nvidia-smi per GPU and per vGPU."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.access.transport import LocalRootTransport
from reconciler.model.facts import ProbeFacts, pci_address
from reconciler.observe.cpuinfo import parse_cpuinfo
from reconciler.observe.mdevs import active_mdevs
from reconciler.observe.nvidia_smi import parse_vgpu_query, summarize
from reconciler.observe.parsers import ParseError
from reconciler.observe.probe import probe_host
from tests.probe.conftest import write

FORMATS = Path(__file__).resolve().parent.parent / "fixtures" / "formats"


def probe(root: Path) -> ProbeFacts:
    return probe_host(LocalRootTransport(root), "h", timeout=30)


# ---- /proc/cpuinfo ----------------------------------------------------------------------------

@pytest.mark.parametrize("root, vendor, vendor_id, model", [
    ("m60-mdev", "intel", "GenuineIntel", "Intel(R) Xeon(R) CPU E5-2690 v4 @ 2.60GHz"),
    ("epyc-h100-passthrough", "amd", "AuthenticAMD", "AMD EPYC 9354 32-Core Processor"),
])
def test_cpuinfo_of_the_roots(hosts_dir: Path, root: str, vendor: str, vendor_id: str,
                              model: str) -> None:
    info = parse_cpuinfo((hosts_dir / root / "proc/cpuinfo").read_text())
    assert (info.vendor, info.vendor_id, info.model) == (vendor, vendor_id, model)


@pytest.mark.parametrize("name, vendor, vendor_id", [
    ("cpuinfo-s390x.txt", "ibms390", "IBM/S390"),
    ("cpuinfo-ppc64le.txt", "ibm", "IBM"),
    ("cpuinfo-hygon.txt", "amd", "HygonGenuine"),
    ("cpuinfo-aarch64.txt", None, None),
])
def test_cpuinfo_formats(name: str, vendor: str | None, vendor_id: str | None) -> None:
    info = parse_cpuinfo((FORMATS / name).read_text())
    assert (info.vendor, info.vendor_id) == (vendor, vendor_id)


def test_cpuinfo_garbage_is_an_error() -> None:
    with pytest.raises(ParseError):
        parse_cpuinfo("")
    with pytest.raises(ParseError):
        parse_cpuinfo("<html>\n")


# ---- mdevs ------------------------------------------------------------------------------------

def test_mdevs_from_listing_and_type_links() -> None:
    u1, u2 = "3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11", "8F2D7F0B-5B8E-4A0E-8D2F-2F7C1A9E6B22"
    links = {
        f"/sys/class/mdev_bus/0000:05:00.0/mdev_supported_types/nvidia-18/devices/{u1}": f"../../../{u1}",
        # listed under one type, but its own link says another: the link wins
        f"/sys/class/mdev_bus/0000:06:00.0/mdev_supported_types/nvidia-11/devices/{u2}": f"../../../{u2}",
        f"/sys/class/mdev_bus/0000:06:00.0/{u2}/mdev_type": "../mdev_supported_types/nvidia-12",
        "/sys/class/mdev_bus/0000:06:00.0/not-a-uuid/mdev_type": "../x",
        "/sys/bus/pci/devices/0000:05:00.0/driver": "../../../../bus/pci/drivers/nvidia",
    }
    got = active_mdevs(links)
    assert [(m.parent, m.uuid, m.mdev_type) for m in got] == [
        ("0000:05:00.0", u1, "nvidia-18"), ("0000:06:00.0", u2.lower(), "nvidia-12")]


# ---- nvidia-smi -------------------------------------------------------------------------------

def test_vgpu_query_recent_branch_without_mdev_uuid() -> None:
    a, b = parse_vgpu_query((FORMATS / "nvidia-smi-vgpu-q-r595-vendor-vfio.txt").read_text())
    assert (a.gpu, a.active, b.gpu, b.active, b.vgpus) == ("0000:41:00.0", 1, "0000:c1:00.0", 0, ())
    (v,) = a.vgpus
    assert (v.vm_name, v.vgpu_name, v.vgpu_type, v.mdev_uuid) == \
        ("vm-ai-01", "NVIDIA L40S-2Q", 1148, None)


def test_vgpu_query_libvirt_guest_name_and_unset_fields() -> None:
    (section,) = parse_vgpu_query((FORMATS / "nvidia-smi-vgpu-q-libvirt.txt").read_text())
    (v,) = section.vgpus
    assert (v.vm_name, v.vm_uuid, v.mdev_uuid, v.vgpu_type) == \
        ("win10test", None, "00000000-0000-0000-0000-000000000101", 525)


def test_vgpu_query_no_vgpu_mode_and_garbage() -> None:
    assert parse_vgpu_query((FORMATS / "nvidia-smi-vgpu-no-vgpu-mode.txt").read_text()) == ()
    with pytest.raises(ParseError):
        parse_vgpu_query((FORMATS / "nvidia-smi-no-driver.txt").read_text())


def test_summary_counts_vgpus_per_gpu() -> None:
    csv = ("00000000:41:00.0, NVIDIA L40S, 550.90.05, 46068, 4361, 1\n"
           "00000000:C1:00.0, NVIDIA L40S, 550.90.05, 46068, 0, 0\n")
    s = summarize(csv, (FORMATS / "nvidia-smi-vgpu-q-r595-vendor-vfio.txt").read_text())
    assert [(g.address, g.vgpus_active) for g in s.gpus] == [("0000:41:00.0", 1), ("0000:c1:00.0", 0)]
    assert s.vgpus_active == 1 and s.driver_version == "550.90.05"
    assert summarize(csv, None).gpus[0].vgpus_active is None     # vGPU report unknown


def test_pci_address_spelling() -> None:
    assert pci_address("00000000:E1:00.0") == "0000:e1:00.0"
    assert pci_address("0000:05:00.0") == "0000:05:00.0"


# ---- end to end on the roots ------------------------------------------------------------------

def test_m60_mdevs_join_nvidia_smi(hosts_dir: Path) -> None:
    f = probe(hosts_dir / "m60-mdev")
    by_gpu = f.mdevs_by_gpu()
    assert list(by_gpu) == ["0000:05:00.0"]
    assert {m.mdev_type for m in by_gpu["0000:05:00.0"]} == {"nvidia-18"}
    assert {m.uuid for m in f.mdevs} == {v.mdev_uuid for v in f.nvidia_smi.vgpus}
    assert [g.vgpus_active for g in f.nvidia_smi.gpus] == [3, 0, 0, 0]
    assert (f.cpu_vendor, f.cpu_vendor_id) == ("intel", "GenuineIntel")


def test_per_vf_mdev_host(hosts_dir: Path) -> None:   # Ampere on mdev: each VF is a parent
    f = probe(hosts_dir / "a10-vf-mdev")
    assert f.ok and f.iommu_enabled is True
    (gpu, mdevs), = f.mdevs_by_gpu().items()
    assert gpu == "0000:41:00.0"
    assert sorted(m.parent for m in mdevs) == ["0000:41:00.4", "0000:41:00.5"]
    assert {m.mdev_type for m in mdevs} == {"nvidia-593"}
    assert len({t.parent for t in f.mdev_types}) == 32
    free = [t for t in f.mdev_types if t.name == "nvidia-593" and t.available_instances == 1]
    assert len(free) == 30        # one vGPU per VF; the board limit is in the description
    (smi,) = f.nvidia_smi.gpus
    assert (smi.address, smi.vgpus_active, smi.memory_used_mib, smi.utilization_percent) == \
        ("0000:41:00.0", 2, 8231, 12)
    assert {v.vm_name for v in f.nvidia_smi.vgpus} == {"cad-ws-11", "cad-ws-12"}


def test_per_vf_vendor_interface_type_names(hosts_dir: Path) -> None:
    f = probe(hosts_dir / "l40s-sriov")
    used = [p for p in f.pci_functions if p.current_vgpu_type]
    assert [(p.address, p.current_vgpu_name) for p in used] == [
        ("0000:41:00.4", "NVIDIA L40S-2Q"), ("0000:41:00.5", "NVIDIA L40S-2Q")]
    assert f.mdevs == ()
    assert f.nvidia_smi.gpus[0].vgpus_active == 2


def test_iommu_off_host_with_mdev_groups(hosts_dir: Path) -> None:
    f = probe(hosts_dir / "t4-iommu-off")
    # /sys/kernel/iommu_groups holds the mdevs' own groups; /sys/class/iommu is empty
    assert f.iommu_enabled is False
    assert all(p.iommu_group is None for p in f.pci_functions)
    assert [(m.parent, m.mdev_type) for m in f.mdevs] == [("0000:3b:00.0", "nvidia-231")] * 2
    assert [g.vgpus_active for g in f.nvidia_smi.gpus] == [2, 0]


def test_amd_host(hosts_dir: Path) -> None:
    f = probe(hosts_dir / "epyc-h100-passthrough")
    assert (f.cpu_vendor, f.cpu_vendor_id) == ("amd", "AuthenticAMD")
    assert f.iommu_enabled is True and "amd_iommu" not in f.proc_cmdline
    assert [p.address for p in f.pci_functions if p.vendor_id == "10de"] == \
        ["0000:41:00.0", "0000:c1:00.0"]
    assert f.nvidia_smi is None and f.nvidia_smi_note == "nvidia-smi is not installed"
    assert f.mdevs == () and f.vgpu_manager_service == "not-found"


def test_failing_nvidia_smi_is_unknown_with_its_reason(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("t4-iommu-off")
    write(root, "usr/bin/nvidia-smi", "#!/bin/sh\ncat <<'E'\n"
          + (FORMATS / "nvidia-smi-no-driver.txt").read_text() + "E\nexit 9\n", 0o755)
    f = probe(root)
    assert f.ok and f.nvidia_smi is None
    assert f.nvidia_smi_note.startswith("nvidia-smi failed (exit 9): NVIDIA-SMI has failed")
    assert len(f.mdevs) == 2          # the sysfs facts stay


def test_unreadable_vgpu_report_keeps_the_gpus(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("t4-iommu-off")
    script = (root / "usr/bin/nvidia-smi").read_text().replace("    Active vGPUs", "Active vGPUs", 1)
    write(root, "usr/bin/nvidia-smi", script, 0o755)
    f = probe(root)
    assert [g.address for g in f.nvidia_smi.gpus] == ["0000:3b:00.0", "0000:d8:00.0"]
    assert f.nvidia_smi.vgpus == () and f.nvidia_smi.gpus[0].vgpus_active is None


def test_cpuinfo_only_first_block_is_read(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("ws-nouveau")
    text = (root / "proc/cpuinfo").read_text()
    write(root, "proc/cpuinfo", text + ("processor\t: 9\nvendor_id\t: AuthenticAMD\n\n" * 5000))
    f = probe(root)
    assert f.cpu_vendor == "intel"
