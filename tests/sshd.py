"""A real sshd on 127.0.0.1 with throwaway host and user keys, for the tests that cross OpenSSH.

It installs nothing: the openssh-server package comes from `make test-deps`. Tests skip with the
reason when sshd cannot run here (not installed, not root).
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.labwatch import record as record_start

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class SshServer:
    port: int
    user: str
    identity: Path
    known_hosts: Path
    host_pub: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextmanager
def running_sshd(d: Path) -> Iterator[SshServer]:
    """Start sshd with its keys and config in folder `d`; stop it on exit."""
    if not SSHD.exists() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("sshd not found: install openssh-server and openssh-client (make test-deps)")
    if os.geteuid() != 0:
        pytest.skip("sshd must run as root to log a user in with its own privilege separation")
    # sshd refuses to start without its privilege separation directory (made by the package).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    keygen(d / "host_key")
    keygen(d / "user_key")
    (d / "authorized_keys").write_text((d / "user_key.pub").read_text())
    port = free_port()
    cfg = d / "sshd_config"
    cfg.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
                   f"AuthorizedKeysFile {d / 'authorized_keys'}\nPidFile {d / 'sshd.pid'}\n"
                   "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
                   "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n")
    # sshd's log goes to a file: a pipe nobody drains would block it once full.
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
        record_start("ssh")          # for the marker guard (tests/support/markguard.py)
        host_pub = (d / "host_key.pub").read_text().split()
        known = d / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        yield SshServer(port, getpass.getuser(), d / "user_key", known, " ".join(host_pub[:2]))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
