"""host_ops on a lab engine's simulated host root: the emulated dracut and grubby really run."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from reconciler.apply import engine_ops, host_ops
from reconciler_lab.transport import LabTransport

from .conftest import FAST, FOREIGN_MODPROBE

pytestmark = pytest.mark.lab

OURS = "blacklist nouveau\noptions nouveau modeset=0\ninstall nouveau /bin/false\n"


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _lab_hosts() -> Any:
    from reconciler_lab import hosts
    return hosts


@pytest.fixture
def transport(lab: Any) -> LabTransport:
    return LabTransport(lab.host_root, "gpu-01")


def test_modprobe_file_then_dracut_puts_it_in_the_initramfs(lab, transport) -> None:
    hosts = _lab_hosts()
    root = Path(transport.root)
    folder = root / "etc/modprobe.d"
    foreign = {name: (folder / name).read_bytes() for name, _ in FOREIGN_MODPROBE}
    assert foreign  # the fleet gave this host files that are not ours
    before = _digests(folder)

    result = host_ops.write_modprobe_file(transport, "gpu-reconciler", OURS)
    assert result.changed and result.backup_path is None
    host_ops.regenerate_initramfs(transport)

    kver = hosts.running_kernel(root)
    image = hosts.read_initramfs(hosts.initramfs_path(root, kver))
    assert image["files"]["etc/modprobe.d/gpu-reconciler.conf"] == OURS
    assert "--force" in image["dracut_args"]
    # Foreign files are byte-identical, and the only new name is ours.
    after = _digests(folder)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"gpu-reconciler.conf"}

    # A repeat is a no-op: same inode, same mtime.
    stat = (folder / "gpu-reconciler.conf").stat()
    assert not host_ops.write_modprobe_file(transport, "gpu-reconciler", OURS).changed
    again = (folder / "gpu-reconciler.conf").stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_replacing_our_file_backs_it_up(lab, transport) -> None:
    root = Path(transport.root)
    host_ops.write_modprobe_file(transport, "gpu-reconciler", "blacklist nouveau\n")
    result = host_ops.write_modprobe_file(transport, "gpu-reconciler", OURS)
    assert result.backup_path and result.backup_path.endswith(".reconciler-backup")
    assert (root / result.backup_path.lstrip("/")).read_text() == "blacklist nouveau\n"
    assert (root / "etc/modprobe.d/gpu-reconciler.conf").read_text() == OURS


def test_persist_kernel_args_updates_every_boot_entry_once(lab, transport) -> None:
    root = Path(transport.root)
    before = host_ops.boot_entries_args(transport)
    assert before and all("rhgb" in args for args in before)

    result = host_ops.persist_kernel_args(transport, add=["iommu=pt", "rd.driver.blacklist=nouveau"],
                                          remove=["rhgb"])
    assert result.changed
    for args in result.entries:
        assert "iommu=pt" in args and "rd.driver.blacklist=nouveau" in args
        assert "rhgb" not in args
    kernel_cmdline = root / "etc/kernel/cmdline"
    if kernel_cmdline.exists():   # RHEL 9: kernels installed later inherit the args
        assert "iommu=pt" in kernel_cmdline.read_text().split()

    entries = sorted((root / "boot/loader/entries").glob("*.conf"))
    mtimes = [p.stat().st_mtime_ns for p in entries]
    again = host_ops.persist_kernel_args(transport, add=["iommu=pt"], remove=["rhgb"])
    assert not again.changed
    assert [p.stat().st_mtime_ns for p in entries] == mtimes


def test_persisted_args_survive_an_engine_reinstall_and_reboot(lab, conn) -> None:
    transport = LabTransport(lab.host_root, "gpu-05")
    host_ops.persist_kernel_args(transport, add=["iommu=pt"])
    engine_ops.install_host(conn, "gpu-05", timeout=20, timing=FAST)
    h = conn.system_service().hosts_service().list(search="name=gpu-05")[0]
    booted = h.os.reported_kernel_cmdline.split()
    assert "iommu=pt" in booted and "intel_iommu=on" in booted
    assert "iommu=pt" in host_ops.read_file(transport, "/proc/cmdline").decode().split()
