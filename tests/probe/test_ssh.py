"""The probe over a real OpenSSH connection: an sshd started here on 127.0.0.1 with throwaway keys."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import HostAccessError
from reconciler.observe.probe import probe_host, probe_hosts
from reconciler.access.transport import OpenSSHTransport

from ..sshd import SshServer, free_port, keygen, running_sshd

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def _transport(s: SshServer, known_hosts: Path, root: str = "/") -> OpenSSHTransport:
    return OpenSSHTransport("127.0.0.1", s.user, s.port, s.identity, known_hosts,
                            connect_timeout=5, root=root)


def test_probe_fixture_root_over_ssh(sshd: SshServer, hosts_dir: Path) -> None:
    t = _transport(sshd, sshd.known_hosts, root=str(hosts_dir / "m60-mdev"))
    f = probe_host(t, "m60", timeout=30)
    assert f.ok, f.reason
    assert f.proc_cmdline.endswith("nouveau.modeset=0")
    assert len(f.mdev_types) == 56 and f.nvidia_smi.vgpus_active == 3
    assert "nouveau" in f.initramfs_blacklist


def test_remote_argv_is_not_a_shell_line(sshd: SshServer) -> None:
    t = _transport(sshd, sshd.known_hosts)
    r = t.run(["printf", "%s|", "a b", "$(id)", "x;y", "'q'"])
    assert r.ok and r.stdout == b"a b|$(id)|x;y|'q'|"


def test_write_and_read_file_over_ssh(sshd: SshServer, tmp_path: Path) -> None:
    t = _transport(sshd, sshd.known_hosts)
    target = tmp_path / "modprobe.conf"
    target.write_bytes(b"old\n")
    t.write_file(str(target), b"blacklist nouveau\n", mode=0o600, backup=True)
    assert t.read_file(str(target)) == b"blacklist nouveau\n"
    assert (tmp_path / "modprobe.conf.reconciler-backup").read_bytes() == b"old\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert t.read_file(str(tmp_path / "absent")) is None


def test_unknown_host_key_refused(sshd: SshServer, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    t = _transport(sshd, empty)
    with pytest.raises(HostAccessError) as err:
        t.run(["true"])
    assert str(err.value) == f"host key for 127.0.0.1 not in known_hosts {empty}"
    (f,) = probe_hosts({"gpu-x": t}, 1, 20)
    assert f.status == "unknown" and f.reason == str(err.value)


def test_changed_host_key_refused(sshd: SshServer, tmp_path: Path) -> None:
    keygen(tmp_path / "other")
    other = (tmp_path / "other.pub").read_text().split()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    with pytest.raises(HostAccessError, match=r"host key for 127\.0\.0\.1 changed"):
        _transport(sshd, kh).run(["true"])


def test_connection_refused_is_clear(sshd: SshServer) -> None:
    t = OpenSSHTransport("127.0.0.1", sshd.user, free_port(), sshd.identity, sshd.known_hosts, 5)
    with pytest.raises(HostAccessError, match="connection refused"):
        t.run(["true"])
