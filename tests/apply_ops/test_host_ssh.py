"""host_ops over a real OpenSSH connection (an sshd started here with throwaway keys), acting on a
host tree under a temporary root so the machine's own /etc is never touched."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.apply import host_ops
from reconciler.access.transport import OpenSSHTransport

from ..sshd import running_sshd

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def ssh_transport_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        def make(root: Path) -> OpenSSHTransport:
            return OpenSSHTransport("127.0.0.1", server.user, server.port, server.identity,
                                    server.known_hosts, connect_timeout=5, root=str(root))
        yield make


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
