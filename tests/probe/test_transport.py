"""LocalRoot transport, timeouts, and garbage output; the OpenSSH argv and its validation."""
from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.errors import HostAccessError
from reconciler.observe.probe import probe_hosts
from reconciler.access.transport import CommandResult, LocalRootTransport, OpenSSHTransport
from reconciler_lab.transport import LabTransport
from tests.probe.conftest import write


def test_local_root_resolves_commands_inside_root(tmp_path: Path) -> None:
    write(tmp_path, "usr/bin/grubby", '#!/bin/sh\nprintf "%s|" "$HOST_ROOT" "$@"\n', 0o755)
    t = LocalRootTransport(tmp_path)
    r = t.run(["grubby", "--update-kernel=ALL", "--args=intel_iommu=on $(reboot)"])
    assert r.ok
    assert r.stdout.decode() == f"{tmp_path}|--update-kernel=ALL|--args=intel_iommu=on $(reboot)|"
    missing = t.run(["dracut", "--force"])
    assert missing.returncode == 127
    with pytest.raises(HostAccessError):
        t.run(["../../bin/sh"])
    with pytest.raises(HostAccessError):
        t.run("dracut --force")  # type: ignore[arg-type]


def test_local_root_files_atomic_with_backup(tmp_path: Path) -> None:
    t = LocalRootTransport(tmp_path)
    assert t.read_file("/etc/modprobe.d/x.conf") is None
    (tmp_path / "etc/modprobe.d").mkdir(parents=True)
    t.write_file("/etc/modprobe.d/x.conf", b"blacklist nouveau\n", backup=True)
    t.write_file("/etc/modprobe.d/x.conf", b"blacklist nouveau\noptions nouveau modeset=0\n", 0o600)
    assert t.read_file("/etc/modprobe.d/x.conf") == b"blacklist nouveau\noptions nouveau modeset=0\n"
    assert (tmp_path / "etc/modprobe.d/x.conf.reconciler-backup").read_bytes() == b"blacklist nouveau\n"
    assert oct((tmp_path / "etc/modprobe.d/x.conf").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(HostAccessError):
        t.write_file("/etc/../../escape", b"")


def test_lab_transport_uses_root_for(tmp_path: Path) -> None:
    roots = {"gpu-01": tmp_path}
    t = LabTransport(roots.__getitem__, "gpu-01")
    assert t.root == str(tmp_path.resolve()) and t.describe() == "lab host gpu-01"


@pytest.mark.slow        # the hang lasts the whole timeout
def test_hanging_host_is_unknown_after_timeout_others_complete(
        hosts_dir: Path, copy_root: Callable[[str], Path]) -> None:
    hang = copy_root("m60-mdev")
    # a command that forks a child holding the pipe: the whole process group must be killed
    write(hang, "usr/bin/nvidia-smi", "#!/bin/sh\nsleep 300 &\nsleep 300\n", 0o755)
    # One timeout for all three: it must be long enough for the good hosts' probes (a fraction
    # of a second on an idle machine) on a loaded one, since they share it with the hang.
    facts = probe_hosts({"hang": LocalRootTransport(hang),
                         "h100": LocalRootTransport(hosts_dir / "h100-passthrough"),
                         "l40s": LocalRootTransport(hosts_dir / "l40s-sriov")},
                        concurrency=3, timeout=8)
    by_host = {f.host: f for f in facts}
    assert by_host["hang"].status == "unknown"
    assert "timed out after 8s" in by_host["hang"].reason
    assert by_host["hang"].pci_functions == ()
    assert by_host["h100"].ok and by_host["l40s"].ok


class _Fake:
    """A transport whose shell prints fixed output: what a broken or foreign host returns."""

    def __init__(self, out: bytes, rc: int = 0, exc: Exception | None = None) -> None:
        self.out, self.rc, self.exc = out, rc, exc
        self.root = "/"

    def describe(self) -> str:
        return "fake"

    def sh(self, args, stdin=None, timeout=60.0) -> CommandResult:  # noqa: ANN001
        if self.exc:
            raise self.exc
        return CommandResult(self.rc, self.out, b"sh: bad\n")


def test_garbage_refused_and_errors_are_unknown() -> None:
    facts = probe_hosts({"garbage": _Fake(b"Welcome to host!\n\x00\xff"),
                         "failed": _Fake(b"", rc=2),
                         "refused": _Fake(b"", exc=HostAccessError("ssh root@x:22: connection refused")),
                         "bug": _Fake(b"", exc=RuntimeError("boom"))}, concurrency=2, timeout=5)
    reasons = {f.host: (f.status, f.reason) for f in facts}
    assert reasons["garbage"] == ("unknown", "output is not from the host probe")
    assert reasons["failed"][0] == "unknown" and "exit 2" in reasons["failed"][1]
    assert reasons["refused"] == ("unknown", "ssh root@x:22: connection refused")
    assert reasons["bug"] == ("unknown", "probe failed: RuntimeError: boom")


def test_truncated_output_is_unknown(hosts_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.observe import probe as probe_mod
    monkeypatch.setattr(probe_mod, "MAX_OUTPUT", 2000)
    (f,) = probe_hosts({"m60": LocalRootTransport(hosts_dir / "m60-mdev")}, 1, 30)
    assert f.status == "unknown" and "incomplete" in f.reason


def test_ssh_argv_is_strict_and_quoted(tmp_path: Path) -> None:
    t = OpenSSHTransport("gpu-01.example.com", "root", 2222, tmp_path / "id", tmp_path / "kh", 5)
    argv = t.ssh_argv(["grubby", "--update-kernel=ALL", "--args=a b;reboot"])
    assert argv[:argv.index("--")] == [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={tmp_path / 'kh'}", "-o", "ConnectTimeout=5",
        "-o", "IdentitiesOnly=yes", "-i", str(tmp_path / "id"), "-p", "2222"]
    assert argv[-2] == "root@gpu-01.example.com"
    assert shlex.split(argv[-1]) == ["grubby", "--update-kernel=ALL", "--args=a b;reboot"]


@pytest.mark.parametrize("host,user", [("-oProxyCommand=x", "root"), ("a b", "root"),
                                       ("gpu;reboot", "root"), ("gpu", "-l"), ("gpu", "ro ot")])
def test_ssh_rejects_bad_host_or_user(host: str, user: str) -> None:
    with pytest.raises(HostAccessError):
        OpenSSHTransport(host, user)


def test_ssh_missing_known_hosts_is_clear(tmp_path: Path) -> None:
    t = OpenSSHTransport("gpu-01", known_hosts_file=tmp_path / "nope")
    with pytest.raises(HostAccessError, match="host key for gpu-01 not in known_hosts"):
        t.run(["true"])
    assert not os.path.exists(tmp_path / "nope")


def test_forged_or_broken_records_are_unknown() -> None:
    from reconciler.observe.probe import parse_probe_output
    from reconciler.observe.parsers import ParseError
    m = "@@abc@@"
    good = f"{m} probe 1\n{m} file /proc/cmdline\nro quiet\n\n{m} end\n{m} done\n".encode()
    assert parse_probe_output("h", good, m).proc_cmdline == "ro quiet"
    for bad in (f"{m} probe 1\n{m} file /proc/cmdline\nro\n{m} done\n",     # record not closed
                f"{m} probe 1\n{m} iommu_groups many\n{m} done\n",
                f"{m} probe 1\n{m} file /proc/cmdline\nro\n\n{m} end\n",      # no done: cut off
                f"@@other@@ probe 1\n@@other@@ done\n"):                      # another marker
        with pytest.raises(ParseError):
            parse_probe_output("h", bad.encode(), m)


def test_ssh_as_a_non_root_user_goes_through_passwordless_sudo(tmp_path: Path) -> None:
    t = OpenSSHTransport("gpu-01", "ops", 22, None, tmp_path / "kh", 5)
    argv = t.ssh_argv(["cat", "/proc/cmdline"])
    assert argv[-2] == "ops@gpu-01"
    assert shlex.split(argv[-1]) == ["sudo", "-n", "--", "cat", "/proc/cmdline"]
    root = OpenSSHTransport("gpu-01", "root", 22, None, tmp_path / "kh", 5)
    assert shlex.split(root.ssh_argv(["cat", "/proc/cmdline"])[-1]) == ["cat", "/proc/cmdline"]
