"""The probe over a real OpenSSH connection: an sshd started here on 127.0.0.1 with throwaway keys."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.errors import HostAccessError
from reconciler.observe.probe import probe_host, probe_hosts
from reconciler.observe.transport import OpenSSHTransport

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    identity: Path
    known_hosts: Path
    host_pub: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("sshd not found: install openssh-server and openssh-client (make system-deps)")
    if os.geteuid() != 0:
        pytest.skip("sshd must run as root to log a user in with its own privilege separation")
    # sshd refuses to start without its privilege separation directory (made by the package).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = _free_port()
    cfg = d / "sshd_config"
    cfg.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
                   f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
                   "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    # sshd's log goes to a file: a pipe nobody drains would block it once full.
    log = (d / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=log)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            log.close()
            pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("sshd did not start listening")
            time.sleep(0.05)
    host_pub = (d / "host_key.pub").read_text().split()
    known = d / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    try:
        yield SshServer(port, getpass.getuser(), d / "user_key", known, " ".join(host_pub[:2]))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
    _keygen(tmp_path / "other")
    other = (tmp_path / "other.pub").read_text().split()
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n")
    with pytest.raises(HostAccessError, match=r"host key for 127\.0\.0\.1 changed"):
        _transport(sshd, kh).run(["true"])


def test_connection_refused_is_clear(sshd: SshServer) -> None:
    t = OpenSSHTransport("127.0.0.1", sshd.user, _free_port(), sshd.identity, sshd.known_hosts, 5)
    with pytest.raises(HostAccessError, match="connection refused"):
        t.run(["true"])
