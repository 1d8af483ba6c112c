"""Kept answers of the emulated read-only queries: replayed by the wrapper only while fresh."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler_lab import hostcmd, hosts


def emulate(root: Path, name: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """The emulation itself, bypassing the wrapper."""
    env = {**os.environ, "HOST_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", "reconciler_lab.hostcmd", name, *argv],
                          env=env, capture_output=True, text=True, timeout=60)


def kept_output(root: Path, name: str, argv: list[str]) -> Path:
    joined = "\x1f".join((name, *argv))
    for line in (root / hostcmd.OUT_DIR / "index").read_text().splitlines():
        key, _, text = line.partition(" ")
        if text == joined:
            return root / hostcmd.OUT_DIR / f"{key}.out"
    raise AssertionError(f"no kept answer for {name} {argv}")


@pytest.mark.slow        # runs the emulated host commands, one process each
def test_probe_queries_are_kept_and_equal_the_emulation(host_root, run) -> None:
    root = host_root("m60-01")
    queries = hostcmd.probe_queries(root)
    assert {name for name, _ in queries} == {"lsinitrd", "systemctl", "nvidia-smi"}
    for name, argv in queries:
        replayed, direct = run(root, name, *argv), emulate(root, name, argv)
        assert (replayed.returncode, replayed.stdout, replayed.stderr) == \
            (direct.returncode, direct.stdout, direct.stderr), (name, argv)


def test_wrapper_replays_the_kept_answer(host_root, run) -> None:
    root = host_root("m60-01")
    argv = ["vgpu", "-q"]
    out = kept_output(root, "nvidia-smi", argv)
    out.write_text("replayed\n")        # newer than every state file: still fresh
    assert run(root, "nvidia-smi", *argv).stdout == "replayed\n"
    other = run(root, "nvidia-smi", "-L")   # never kept before: emulated, then kept
    assert other.stdout.startswith("GPU 0: Tesla M60")
    assert kept_output(root, "nvidia-smi", ["-L"]).read_text() == other.stdout


@pytest.mark.slow        # runs the emulated host commands, one process each
def test_lab_operations_forget_answers(host_root, run) -> None:
    root = host_root("m60-01")
    before = run(root, "nvidia-smi", "vgpu", "-q").stdout
    assert "Active vGPUs                          : 1" not in before
    hosts.create_mdev(root, "0000:05:00.0", "nvidia-18", "3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11",
                      "vdi-01")
    after = run(root, "nvidia-smi", "vgpu", "-q").stdout
    assert "GPU 00000000:05:00.0\n    Active vGPUs                          : 1\n" in after
    hosts.remove_mdev(root, "3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11")
    assert run(root, "nvidia-smi", "vgpu", "-q").stdout == before


@pytest.mark.slow        # runs the emulated host commands, one process each
def test_mutating_commands_forget_answers(host_root, run) -> None:
    root = host_root("m60-01")
    assert run(root, "systemctl", "is-active", "nvidia-vgpu-mgr.service").stdout == "active\n"
    assert run(root, "systemctl", "stop", "nvidia-vgpu-mgr.service").returncode == 0
    stopped = run(root, "systemctl", "is-active", "nvidia-vgpu-mgr.service")
    assert (stopped.returncode, stopped.stdout) == (3, "inactive\n")
    image = f"/boot/initramfs-{hosts.running_kernel(root)}.img"
    listing = run(root, "lsinitrd", image).stdout
    assert "etc/modprobe.d/nvidia-installer-disable-nouveau.conf" in listing
    (root / "etc/modprobe.d/nvidia-installer-disable-nouveau.conf").unlink()
    assert run(root, "dracut", "-f").returncode == 0
    assert "etc/modprobe.d/nvidia-installer-disable-nouveau.conf" not in \
        run(root, "lsinitrd", image).stdout


def test_edit_behind_the_labs_back_is_not_replayed(host_root, run) -> None:
    root = host_root("m60-01")
    out = kept_output(root, "nvidia-smi", ["vgpu", "-q"])
    modules = root / "proc/modules"
    modules.write_text("".join(line + "\n" for line in modules.read_text().splitlines()
                               if not line.startswith("nvidia")))
    stamp = out.stat().st_mtime + 1       # clearly newer than the kept answer
    os.utime(modules, (stamp, stamp))
    result = run(root, "nvidia-smi", "vgpu", "-q")
    assert result.returncode == 9 and "couldn't communicate with the NVIDIA driver" in result.stdout
