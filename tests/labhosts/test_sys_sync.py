"""sys/ is synced in place after vGPU changes and reboots: the result equals a fresh render."""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from reconciler_lab import hosts


def snapshot(top: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        for name in (*dirnames, *filenames):
            path = here / name
            rel = str(path.relative_to(top))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                out[rel] = ("dir",)
            else:
                mode = stat.S_IMODE(path.stat().st_mode)
                out[rel] = ("file", path.read_bytes() if mode & 0o444 else b"", mode)
    return out


def fresh(root: Path) -> dict[str, tuple[object, ...]]:
    shutil.rmtree(root / "sys")
    hosts.render_sys(root, hosts.load_record(root), hosts.load_boot(root))
    return snapshot(root / "sys")


@pytest.mark.slow        # renders and compares whole host roots
def test_vgpu_changes_sync_to_a_fresh_render(host_root) -> None:
    root = host_root("m60-01")
    uuid = "3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11"
    before = snapshot(root / "sys")
    hosts.create_mdev(root, "0000:05:00.0", "nvidia-18", uuid, "vdi-01")
    with_vgpu = snapshot(root / "sys")
    assert with_vgpu != before
    assert f"bus/mdev/devices/{uuid}" in with_vgpu
    avail = "devices/pci0000:00/0000:05:00.0/mdev_supported_types/nvidia-18/available_instances"
    assert with_vgpu[avail] == ("file", b"3\n", 0o644)
    assert fresh(root) == with_vgpu
    hosts.remove_mdev(root, uuid)
    assert snapshot(root / "sys") == before == fresh(root)


@pytest.mark.slow        # renders and compares whole host roots
def test_reboot_into_other_drivers_syncs_to_a_fresh_render(host_root, run) -> None:
    root = host_root("m60-02")
    before = snapshot(root / "sys")
    (root / "etc/modprobe.d/nvidia-installer-disable-nouveau.conf").unlink()
    assert run(root, "dracut", "-f").returncode == 0
    hosts.reboot(root)
    after = snapshot(root / "sys")
    assert after != before
    assert fresh(root) == after


@pytest.mark.slow        # renders and compares whole host roots
def test_stray_entries_are_removed(host_root) -> None:
    root = host_root("m60-01")
    before = snapshot(root / "sys")
    (root / "sys/bus/pci/devices/0000:05:00.0/vendor").write_text("0xffff\n")
    (root / "sys/stray").mkdir()
    (root / "sys/stray/file").write_text("x")
    os.symlink("nowhere", root / "sys/bus/pci/devices/0000:ff:00.0")
    hosts.render_sys(root, hosts.load_record(root), hosts.load_boot(root))
    assert snapshot(root / "sys") == before
