"""The emulated host commands, run as subprocesses the way the probe runs them."""
from __future__ import annotations

import re

import pytest

from reconciler_lab import hosts


def test_refuses_without_host_root(host_root, run) -> None:
    result = run(host_root("m60-01"), "lsmod", env_root=False)
    assert result.returncode == 2 and "HOST_ROOT" in result.stderr


def test_lsmod_matches_proc_modules(host_root, run) -> None:
    root = host_root("m60-01")
    result = run(root, "lsmod")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "Module                  Size  Used by"
    assert "nvidia_vgpu_vfio       65536  0" in lines
    assert "nvidia              39067648  1 nvidia_vgpu_vfio" in lines
    assert "mdev                   20480  1 nvidia_vgpu_vfio" in lines
    assert {line.split()[0] for line in lines[1:]} == hosts.loaded_modules(root)


def test_grubby_info_and_default(host_root, run) -> None:
    root = host_root("m60-01")
    info = run(root, "grubby", "--info=ALL")
    assert info.returncode == 0
    blocks = info.stdout.split("index=")[1:]
    assert len(blocks) == 2
    first = dict(line.split("=", 1) for line in ("index=" + blocks[0]).splitlines())
    assert first["index"] == "0"
    assert first["kernel"] == '"/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64"'
    assert first["root"] == '"/dev/mapper/rhel-root"'
    assert first["args"].startswith('"ro crashkernel=') and "intel_iommu=on" in first["args"]
    assert re.fullmatch(r'"[0-9a-f]{32}-5\.14\.0-427\.13\.1\.el9_4\.x86_64"', first["id"])
    default = run(root, "grubby", "--default-kernel")
    assert default.stdout == "/boot/vmlinuz-5.14.0-427.13.1.el9_4.x86_64\n"
    bad = run(root, "grubby", "--frobnicate")
    assert bad.returncode == 1 and "unknown option" in bad.stderr


def test_grubby_update_all(host_root, run) -> None:
    root = host_root("m60-02")
    result = run(root, "grubby", "--update-kernel=ALL", "--args=intel_iommu=on iommu=pt",
                 "--remove-args=quiet")
    assert result.returncode == 0, result.stderr
    for _, fields in hosts.bls_entries(root):
        tokens = fields["options"].split()
        assert tokens[-2:] == ["intel_iommu=on", "iommu=pt"] and "quiet" not in tokens
    assert (root / "etc/kernel/cmdline").read_text().split()[-2:] == ["intel_iommu=on",
                                                                       "iommu=pt"]
    assert "intel_iommu=on" not in hosts.proc_cmdline(root)        # not booted yet
    # replacing a value keeps one token per key; removing by key drops any value
    hosts.grubby_update(root, ["iommu=nopt"], [])
    assert [t for t in hosts.persisted_args(root) if t.startswith("iommu=")] == ["iommu=nopt"]
    hosts.grubby_update(root, [], ["iommu"])
    assert not any(t.startswith("iommu=") for t in hosts.persisted_args(root))


def test_grubby_rhel8_kernelopts(tmp_path, demo_host) -> None:
    from dataclasses import replace

    from reconciler_lab.fleet import RHEL8_CMDLINE
    host = replace(demo_host("m60-02"), name="r8", os_release="rhel8", base_cmdline=RHEL8_CMDLINE)
    root = hosts.ensure_host_root(tmp_path / "r8", host)
    assert not (root / "etc/kernel/cmdline").exists()
    for _, fields in hosts.bls_entries(root):
        assert fields["options"] == "$kernelopts $tuned_params"
    hosts.grubby_update(root, ["intel_iommu=on"], [])
    assert "intel_iommu=on" in hosts.read_grubenv(root)["kernelopts"].split()
    assert hosts.persisted_args(root)[-1] == "intel_iommu=on"
    hosts.reboot(root)
    assert hosts.proc_cmdline(root).startswith("BOOT_IMAGE=(hd0,msdos1)/vmlinuz-4.18.0-477")
    assert hosts.proc_cmdline(root).endswith("intel_iommu=on")
    assert "vfio_mdev" in hosts.loaded_modules(root)


@pytest.mark.slow        # runs the emulated host commands, one process each
def test_dracut_and_lsinitrd(host_root, run) -> None:
    root = host_root("amd-01")
    listing = run(root, "lsinitrd")
    assert listing.returncode == 0
    assert "etc/modprobe.d/blacklist-nouveau.conf" not in listing.stdout
    (root / "etc/modprobe.d/blacklist-nouveau.conf").write_text(
        "blacklist nouveau\noptions nouveau modeset=0\n")
    refused = run(root, "dracut")
    assert refused.returncode == 1 and "without --force" in refused.stderr
    assert run(root, "dracut", "--force").returncode == 0
    listing = run(root, "lsinitrd")
    line = next(x for x in listing.stdout.splitlines()
                if x.endswith("etc/modprobe.d/blacklist-nouveau.conf"))
    assert re.fullmatch(r"-rw-r--r--   1 root     root           44 Jan  1 00:00 "
                        r"etc/modprobe.d/blacklist-nouveau.conf", line)
    content = run(root, "lsinitrd", "-f", "etc/modprobe.d/blacklist-nouveau.conf")
    assert content.stdout == "blacklist nouveau\noptions nouveau modeset=0\n"
    assert "Arguments: --force" in listing.stdout


@pytest.mark.slow        # runs the emulated host commands, one process each
def test_systemctl(host_root, run) -> None:
    m60, amd = host_root("m60-01"), host_root("amd-01")
    active = run(m60, "systemctl", "is-active", "nvidia-vgpu-mgr.service")
    assert (active.returncode, active.stdout) == (0, "active\n")
    show = run(m60, "systemctl", "show", "nvidia-vgpu-mgr", "-p", "ActiveState,SubState,LoadState")
    assert show.stdout == "LoadState=loaded\nActiveState=active\nSubState=running\n"
    missing = run(amd, "systemctl", "is-active", "nvidia-vgpu-mgr.service")
    assert (missing.returncode, missing.stdout) == (3, "inactive\n")
    enabled = run(amd, "systemctl", "is-enabled", "nvidia-vgpu-mgr.service")
    assert enabled.returncode == 1 and enabled.stdout == ""
    assert "Failed to get unit file state for nvidia-vgpu-mgr.service" in enabled.stderr
    show = run(amd, "systemctl", "show", "nvidia-vgpu-mgr.service", "--property=LoadState",
               "--property=ActiveState")
    assert show.stdout == "LoadState=not-found\nActiveState=inactive\n"
    values = run(m60, "systemctl", "show", "vdsmd", "-p", "ActiveState", "--value")
    assert values.stdout == "active\n"
    stop = run(m60, "systemctl", "stop", "nvidia-vgpu-mgr")
    assert stop.returncode == 0
    assert run(m60, "systemctl", "is-active", "nvidia-vgpu-mgr").returncode == 3
    assert run(amd, "systemctl", "start", "nvidia-vgpu-mgr").returncode == 5


@pytest.mark.slow        # runs the emulated host commands, one process each
def test_nvidia_smi(host_root, run) -> None:
    root = host_root("m60-01")
    csv = run(root, "nvidia-smi", "--query-gpu=index,pci.bus_id,name,driver_version,memory.total",
              "--format=csv,noheader,nounits")
    assert csv.returncode == 0
    assert csv.stdout.splitlines() == [
        f"{i}, 00000000:{bus}:00.0, Tesla M60, 535.161.05, 8192"
        for i, bus in enumerate(("05", "06", "85", "86"))]
    header = run(root, "nvidia-smi", "--query-gpu=name,memory.total", "--format=csv")
    assert header.stdout.splitlines()[:2] == ["name, memory.total [MiB]", "Tesla M60, 8192 MiB"]
    bad = run(root, "nvidia-smi", "--query-gpu=bogus", "--format=csv")
    assert bad.returncode == 2 and 'Field "bogus" is not a valid field' in bad.stderr
    table = run(root, "nvidia-smi")
    assert "| NVIDIA-SMI 535.161.05" in table.stdout and "Driver Version: 535.161.05" in table.stdout
    assert table.stdout.count("Tesla M60") == 4
    assert all(len(line) == 89 for line in table.stdout.splitlines()[1:] if line.strip())
    hosts.create_mdev(root, "0000:05:00.0", "nvidia-18", "3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11",
                      "vdi-01")
    vgpu = run(root, "nvidia-smi", "vgpu", "-q")
    assert "GPU 00000000:05:00.0\n    Active vGPUs                          : 1\n" in vgpu.stdout
    lines = vgpu.stdout.splitlines()
    assert "        vGPU Name                         : GRID M60-2Q" in lines
    assert "        MDEV UUID                         : 3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11" \
        in lines
    assert "        VM Name                           : vdi-01" in lines
    assert all(line.index(":") == 42 for line in lines if ":" in line and line.startswith(" "))
    assert "GPU 00000000:06:00.0\n    Active vGPUs                          : 0\n" in vgpu.stdout
    summary = run(root, "nvidia-smi", "vgpu")
    assert "GRID M60-2Q" in summary.stdout and "vdi-01" in summary.stdout
    types = root / "sys/bus/pci/devices/0000:05:00.0/mdev_supported_types"
    assert (types / "nvidia-18/available_instances").read_text() == "3\n"
    assert (types / "nvidia-11/available_instances").read_text() == "0\n"


@pytest.mark.slow        # runs the emulated host commands, one process each
def test_nvidia_smi_without_driver(host_root, run) -> None:
    root = host_root("m60-02")
    (root / "etc/modprobe.d/nvidia-installer-disable-nouveau.conf").unlink()
    assert run(root, "dracut", "-f").returncode == 0
    hosts.reboot(root)
    result = run(root, "nvidia-smi")
    assert result.returncode == 9 and "couldn't communicate with the NVIDIA driver" in result.stdout
    assert run(root, "systemctl", "is-active", "nvidia-vgpu-mgr").stdout == "failed\n"


def test_lspci(host_root, run) -> None:
    out = run(host_root("amd-01"), "lspci", "-Dnnk", "-s", "41:00.1").stdout
    assert out == ("0000:41:00.1 Audio device [0403]: NVIDIA Corporation GK104 HDMI Audio "
                   "Controller [10de:0e0a] (rev a1)\n\tSubsystem: NVIDIA Corporation Device "
                   "[10de:1096]\n\tKernel driver in use: snd_hda_intel\n"
                   "\tKernel modules: snd_hda_intel\n")


def test_lsinitrd_stays_inside_the_root(host_root, run) -> None:
    result = run(host_root("amd-01"), "lsinitrd", "/../../../../etc/passwd")
    assert result.returncode != 0 and "root:" not in result.stdout
