"""host_ops over a real OpenSSH connection (an sshd started here with throwaway keys), acting on a
host tree under a temporary root so the machine's own /etc is never touched."""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.apply import host_ops
from reconciler.observe.transport import OpenSSHTransport

SSHD = Path("/usr/sbin/sshd")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@pytest.fixture(scope="module")
def ssh_transport_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("sshd not found: install openssh-server and openssh-client")
    if os.geteuid() != 0:
        pytest.skip("sshd must run as root to log a user in")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    d = tmp_path_factory.mktemp("sshd")
    _keygen(d / "host_key")
    _keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cfg = d / "sshd_config"
    cfg.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
                   f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
                   "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    log = (d / "sshd.log").open("wb")
    proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(d / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not start listening")
                time.sleep(0.05)
        kind, key = (d / "host_key.pub").read_text().split()[:2]
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {key}\n")

        def make(root: Path) -> OpenSSHTransport:
            return OpenSSHTransport("127.0.0.1", "root", port, d / "user_key", d / "known_hosts",
                                    connect_timeout=5, root=str(root))
        yield make
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_modprobe_file_over_ssh_lands_under_the_hosts_root(ssh_transport_factory,
                                                          tmp_path: Path) -> None:
    folder = tmp_path / "etc/modprobe.d"
    folder.mkdir(parents=True)
    (folder / "blacklist-nouveau.conf").write_bytes(b"blacklist nouveau\n")
    foreign = hashlib.sha256((folder / "blacklist-nouveau.conf").read_bytes()).hexdigest()
    t = ssh_transport_factory(tmp_path)

    first = host_ops.write_modprobe_file(t, "gpu-reconciler", "blacklist nouveau\n")
    assert first.changed and (folder / "gpu-reconciler.conf").read_text() == "blacklist nouveau\n"
    assert not host_ops.write_modprobe_file(t, "gpu-reconciler", "blacklist nouveau\n").changed

    second = host_ops.write_modprobe_file(t, "gpu-reconciler", "options nouveau modeset=0\n")
    assert second.backup_path
    assert (tmp_path / second.backup_path.lstrip("/")).read_text() == "blacklist nouveau\n"
    assert host_ops.read_file(t, "/etc/modprobe.d/gpu-reconciler.conf") == \
        b"options nouveau modeset=0\n"

    removed = host_ops.remove_modprobe_file(t, "gpu-reconciler")
    assert removed.changed and not (folder / "gpu-reconciler.conf").exists()
    assert (tmp_path / removed.backup_path.lstrip("/")).read_text() == "options nouveau modeset=0\n"
    assert hashlib.sha256((folder / "blacklist-nouveau.conf").read_bytes()).hexdigest() == foreign
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
