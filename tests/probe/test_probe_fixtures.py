"""The probe end to end through LocalRootTransport on the fixture roots (host-facts § 8)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.model.cmdline import kernel_arg_views
from reconciler.observe.probe import probe_host, probe_hosts, probe_script
from reconciler.access.transport import LocalRootTransport
from tests.probe.conftest import write


def probe(root: Path, name: str = "h") -> object:
    return probe_host(LocalRootTransport(root), name, timeout=30)


def test_m60_mdev_host(hosts_dir: Path) -> None:   # § 8.A
    f = probe(hosts_dir / "m60-mdev", "m60")
    assert f.ok and f.host == "m60" and f.reason is None
    assert f.proc_cmdline.startswith("BOOT_IMAGE=(hd0,msdos1)/vmlinuz-4.18.0-477.10.1.el8_8")
    (entry,) = f.boot_entries
    assert "$kernelopts" not in entry.options and entry.options.endswith("nouveau.modeset=0")
    assert f.grub_cmdline_linux.endswith("intel_iommu=on rd.driver.blacklist=nouveau nouveau.modeset=0")
    assert f.etc_kernel_cmdline is None
    assert "nouveau" in f.initramfs_blacklist
    assert {"nvidia", "nvidia_vgpu_vfio", "mdev"} <= set(f.loaded_modules)
    assert "nouveau" not in f.loaded_modules
    assert f.vgpu_manager_service == "active"
    assert f.iommu_enabled is True
    gpus = [p for p in f.pci_functions if p.vendor_id == "10de"]
    assert [g.address for g in gpus] == ["0000:05:00.0", "0000:06:00.0", "0000:85:00.0", "0000:86:00.0"]
    assert {(g.driver, g.iommu_group, g.class_code, g.device_id) for g in gpus[:1]} == \
        {("nvidia", 40, "0x030000", "13f2")}
    # the NIC and the host bridge are neither display-class, NVIDIA nor in a GPU's group
    assert all(p.vendor_id == "10de" for p in f.pci_functions)
    assert len(f.mdev_types) == 4 * 14
    used = {t.name: t for t in f.mdev_types if t.parent == "0000:05:00.0"}
    assert used["nvidia-18"].available_instances == 1
    assert used["nvidia-18"].human_name == "GRID M60-2Q"
    assert "max_instance=4" in used["nvidia-18"].description
    # homogeneous lock: every other type on that GPU has no instance left
    assert all(t.available_instances == 0 for n, t in used.items() if n != "nvidia-18")
    free = {t.name: t.available_instances for t in f.mdev_types if t.parent == "0000:06:00.0"}
    assert free["nvidia-18"] == 4 and free["nvidia-11"] == 16
    assert f.nvidia_smi.driver_version == "535.161.05"
    assert len(f.nvidia_smi.gpus) == 4 and f.nvidia_smi.vgpus_active == 3


def test_h100_passthrough_host(hosts_dir: Path) -> None:   # § 8.B
    f = probe(hosts_dir / "h100-passthrough")
    assert f.ok
    assert "vfio-pci.ids=10de:2331" in f.etc_kernel_cmdline
    kernel_entry = next(e for e in f.boot_entries if "rescue" not in e.id)
    assert kernel_entry.options.endswith("vfio-pci.ids=10de:2331")   # $tuned_params expands to ''
    (gpu,) = f.pci_functions
    assert (gpu.address, gpu.driver, gpu.iommu_group, gpu.class_code) == \
        ("0000:e1:00.0", "vfio-pci", 92, "0x030200")
    assert gpu.sriov_totalvfs == 0
    assert f.initramfs_blacklist == ("nouveau",)
    assert [m.path for m in f.modprobe_files] == ["/etc/modprobe.d/blacklist-nouveau.conf",
                                                  "/etc/modprobe.d/vfio.conf"]
    assert f.modprobe_files[1].options == (("vfio_pci", "ids=10de:2331"),)
    assert "nouveau" not in f.loaded_modules and "vfio_pci" in f.loaded_modules
    assert f.vgpu_manager_service == "not-found"
    assert f.nvidia_smi is None            # passthrough hosts have no host driver
    assert f.mdev_types == ()
    views = kernel_arg_views({"intel_iommu": "intel_iommu=on", "vfio-pci.ids": "vfio-pci.ids=10de:2331"},
                             "", kernel_entry.options, None, f.proc_cmdline)
    assert all(v.configured == v.desired == v.booted for v in views)


def test_l40s_sriov_per_vf_host(hosts_dir: Path) -> None:   # § 8.C
    f = probe(hosts_dir / "l40s-sriov")
    assert f.ok
    pf = next(p for p in f.pci_functions if p.address == "0000:41:00.0")
    assert (pf.sriov_totalvfs, pf.sriov_numvfs, pf.driver, pf.physfn) == (32, 32, "nvidia", None)
    vfs = [p for p in f.pci_functions if p.physfn == "0000:41:00.0"]
    assert len(vfs) == 32
    by_addr = {v.address: v for v in vfs}
    assert by_addr["0000:41:00.4"].current_vgpu_type == 1148
    assert by_addr["0000:41:00.5"].current_vgpu_type == 1148
    assert by_addr["0000:41:00.6"].current_vgpu_type == 0
    assert by_addr["0000:41:00.6"].creatable_vgpu_types == ("nvidia-1148",)
    assert by_addr["0000:41:04.3"].creatable_vgpu_types == ()        # VF beyond max_instance
    assert sum(1 for v in vfs if v.creatable_vgpu_types) == 24
    # the PCIe port shares the PF's IOMMU group, so it is reported as a group member
    assert any(p.address == "0000:40:01.1" and p.iommu_group == 70 for p in f.pci_functions)
    assert f.mdev_types == ()
    assert f.nvidia_smi.vgpus_active == 2 and f.nvidia_smi.driver_version == "550.90.05"
    assert f.initramfs_blacklist is None      # no lsinitrd on this root: unknown, not empty


def test_no_iommu_no_nvidia_driver_nouveau_bound(hosts_dir: Path) -> None:
    f = probe(hosts_dir / "ws-nouveau")
    assert f.ok
    assert f.iommu_enabled is False
    assert f.nvidia_smi is None and f.vgpu_manager_service is None
    gpu = next(p for p in f.pci_functions if p.address == "0000:01:00.0")
    assert gpu.driver == "nouveau" and gpu.iommu_group is None
    audio = next(p for p in f.pci_functions if p.address == "0000:01:00.1")
    assert audio.class_code == "0x040300" and audio.driver == "snd_hda_intel"
    assert any(p.address == "0000:00:02.0" for p in f.pci_functions)   # any display class
    assert not any(p.address == "0000:00:1f.6" for p in f.pci_functions)
    assert "nouveau" in f.loaded_modules
    nouveau_files = [m.path for m in f.modprobe_files if "nouveau" in m.blacklist]
    assert nouveau_files == ["/etc/modprobe.d/blacklist-nouveau.conf",
                             "/etc/modprobe.d/nvidia-installer-disable-nouveau.conf"]
    local = next(m for m in f.modprobe_files if m.path.endswith("local.conf"))
    assert local.path == "/etc/modprobe.d/local.conf" and local.install_false == ("nouveau",)
    assert f.initramfs_blacklist is None


@pytest.mark.slow        # runs the fixture roots' emulated commands
def test_bad_sub_fact_is_unknown_not_a_crash(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("m60-mdev")
    write(root, "sys/bus/pci/devices/0000:06:00.0/mdev_supported_types/nvidia-18/available_instances", "lots\n")
    write(root, "etc/modprobe.d/broken.conf", "frobnicate nouveau\n")
    write(root, "usr/bin/nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI has failed'\nexit 9\n", 0o755)
    f = probe(root)
    assert f.ok
    assert not any(t.parent == "0000:06:00.0" and t.name == "nvidia-18" for t in f.mdev_types)
    assert len(f.mdev_types) == 4 * 14 - 1
    assert "/etc/modprobe.d/broken.conf" not in [m.path for m in f.modprobe_files]
    assert f.nvidia_smi is None
    assert f.proc_cmdline is not None


def test_group_members_are_included(tmp_path: Path) -> None:
    root = tmp_path / "r"
    for bdf, cls, ven, group in (("0000:03:00.0", "0x030000", "0x1002", 7),
                                 ("0000:02:00.0", "0x060400", "0x8086", 7),
                                 ("0000:04:00.0", "0x020000", "0x8086", 8)):
        d = f"sys/bus/pci/devices/{bdf}"
        write(root, f"{d}/class", cls + "\n")
        write(root, f"{d}/vendor", ven + "\n")
        write(root, f"{d}/device", "0x1234\n")
        (root / d / "iommu_group").symlink_to(f"../../../../kernel/iommu_groups/{group}")
        (root / f"sys/kernel/iommu_groups/{group}/devices").mkdir(parents=True, exist_ok=True)
        (root / f"sys/kernel/iommu_groups/{group}/devices/{bdf}").symlink_to(f"../../../../bus/pci/devices/{bdf}")
    write(root, "proc/cmdline", "ro\n")
    f = probe(root)
    assert [p.address for p in f.pci_functions] == ["0000:02:00.0", "0000:03:00.0"]
    assert f.boot_entries == () and f.modprobe_files == () and f.loaded_modules == ()


def test_probe_hosts_orders_by_name_and_isolates_failures(hosts_dir: Path, tmp_path: Path) -> None:
    targets = {"b-h100": LocalRootTransport(hosts_dir / "h100-passthrough"),
               "a-m60": LocalRootTransport(hosts_dir / "m60-mdev"),
               "c-missing": LocalRootTransport(tmp_path / "does-not-exist"),
               "d-l40s": LocalRootTransport(hosts_dir / "l40s-sriov")}
    facts = probe_hosts(targets, concurrency=2, timeout=30)
    assert [f.host for f in facts] == ["a-m60", "b-h100", "c-missing", "d-l40s"]
    assert [f.status for f in facts] == ["ok", "ok", "unknown", "ok"]
    assert facts[2].reason.endswith("root does not exist") and facts[2].pci_functions == ()


def test_script_is_read_only_and_posix() -> None:
    script = probe_script("@@m@@").decode()
    for word in (" > ", ">>", " rm ", "mkdir", "tee ", "dd ", "mv ", "cp ", "echo 1", "chmod"):
        assert word not in script.replace("2>/dev/null", ""), word
    assert "#!/bin/bash" not in script and "[[" not in script


def test_grubby_read_when_there_are_no_bls_snippets(copy_root: Callable[[str], Path]) -> None:
    import shutil
    root = copy_root("h100-passthrough")
    shutil.rmtree(root / "boot/loader/entries")
    f = probe(root)
    assert [e.id for e in f.boot_entries] == [
        "0d7c5e1fa2b34c6d8e9f0a1b2c3d4ee2-5.14.0-427.13.1.el9_4.x86_64",
        "0d7c5e1fa2b34c6d8e9f0a1b2c3d4ee2-0-rescue"]
    assert f.boot_entries[0].kernel == "/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"
    assert f.boot_entries[0].options.endswith("vfio-pci.ids=10de:2331")


@pytest.mark.slow        # runs the fixture roots' emulated commands
def test_service_falls_back_to_is_active(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("l40s-sriov")
    write(root, "usr/bin/systemctl",
          '#!/bin/sh\ncase "$1" in is-active) echo failed; exit 3 ;; *) exit 1 ;; esac\n', 0o755)
    assert probe(root).vgpu_manager_service == "failed"


def _snapshot(root: Path) -> dict[str, tuple[int, float, bytes | str]]:
    snap: dict[str, tuple[int, float, bytes | str]] = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        body: bytes | str = str(p.readlink()) if p.is_symlink() else (
            p.read_bytes() if p.is_file() else b"")
        snap[str(p.relative_to(root))] = (st.st_mode, st.st_mtime, body)
    return snap


def test_probe_changes_nothing_on_the_host(copy_root: Callable[[str], Path]) -> None:
    root = copy_root("m60-mdev")
    before = _snapshot(root)
    assert probe(root).ok
    assert _snapshot(root) == before


def test_probe_of_this_machine_completes() -> None:
    f = probe_host(LocalRootTransport("/"), "self", timeout=60)
    assert f.status == "ok", f.reason
    assert f.proc_cmdline
