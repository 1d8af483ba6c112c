"""A throwaway PostgreSQL server for the tests: one per test session, in a temporary folder, on a
free port of 127.0.0.1; every test that needs a database gets an empty one of its own.

It installs nothing: the `postgresql` package comes from `make system-deps`, psycopg from the
`postgres` extra. A missing server or driver is a failure, not a skip: the store suite must run
against both backends, and a skip would hide that it did not.

PostgreSQL refuses to run as root, so as root the data folder belongs to the `postgres` user the
Debian package creates (or `nobody`) and initdb and postgres run as that user (setpriv).
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.sshd import free_port
from tests.support.labwatch import record as record_start

SUPERUSER = "reconciler"


@dataclass(frozen=True)
class PostgresServer:
    port: int
    folder: Path

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """Stop and start the server (connections drop, data stays)."""
        _pg_ctl(self.folder, "restart", "-w", "-m", "fast", "-o", _options(self.port, self.folder))


def binary(name: str) -> str:
    """A PostgreSQL server program: Debian keeps them out of PATH, in /usr/lib/postgresql/N/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} was not found: install the postgresql package "
                           "(make system-deps does)")
    return candidates[-1]


def _run_as() -> list[str]:
    """The prefix that runs a command as a user PostgreSQL accepts (itself refuses root)."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            continue
        return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                "--clear-groups", "--"]
    raise RuntimeError("running as root and no postgres or nobody user to run PostgreSQL as")


def _owner() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(user)
            return entry.pw_uid, entry.pw_gid
        except KeyError:
            continue
    return None


def _options(port: int, folder: Path) -> str:
    # Durability is not under test: no fsync makes CREATE DATABASE per test cheap.
    return (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")


def _pg_ctl(folder: Path, *args: str) -> None:
    subprocess.run([*_run_as(), binary("pg_ctl"), "-D", str(folder / "data"),
                    "-l", str(folder / "server.log"), *args],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb, start, yield; stop and remove everything after."""
    folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
    owner = _owner()
    if owner is not None:
        os.chown(folder, *owner)
    folder.chmod(0o700)
    port = free_port()
    try:
        subprocess.run([*_run_as(), binary("initdb"), "-D", str(folder / "data"), "-U",
                        SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C", "-N"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=120)
        _pg_ctl(folder, "start", "-w", "-t", "60", "-o", _options(port, folder))
        record_start("postgres")        # for the marker guard (tests/support/markguard.py)
        server = PostgresServer(port, folder)
        _wait_ready(server)
        yield server
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            try:
                _pg_ctl(folder, "stop", "-w", "-m", "immediate")
            except (subprocess.SubprocessError, OSError):
                pass
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ready(server: PostgresServer) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(server.url(), connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
