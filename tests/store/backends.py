"""The store backends the suite runs against (every implementation of `StateStore`), and its clock.

Kept out of conftest.py because child processes import it too: the lock tests start holders in
other processes, which open the same database by backend name and location. A backend is one
name in BACKENDS, a branch in `fresh_location` that gives each test an empty database of its own,
and one in `open_store`; the whole suite then runs against it. PostgreSQL's databases live on the
session's throwaway server (tests/support/postgres.py), which `fresh_location` is handed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.store import StateStore, Store
from reconciler.store.postgres import PostgresStore

if TYPE_CHECKING:
    from tests.support.postgres import PostgresServer

BACKENDS = ("sqlite", "postgres")


def fresh_location(backend: str, tmp_path: Path, server: PostgresServer | None = None) -> str:
    """Where a test's own, empty database lives (a file path for SQLite, a URL for a server)."""
    if backend == "sqlite":
        return str(tmp_path / "state" / "state.db")
    if backend == "postgres":
        assert server is not None, "the postgres backend needs the session's server"
        return server.create_database("store")
    raise ValueError(f"unknown store backend {backend!r}")


def open_store(backend: str, location: str, **options: Any) -> StateStore:
    """A store on `location`, opened the way any process opens it. `options`: lock_ttl,
    hostname, clock."""
    if backend == "sqlite":
        return Store(location, **options)
    if backend == "postgres":
        return PostgresStore(location, **options)
    raise ValueError(f"unknown store backend {backend!r}")


@dataclass(frozen=True)
class Backend:
    """One backend with one test's database: open it as often as a test needs."""

    name: str
    location: str

    def open(self, **options: Any) -> StateStore:
        return open_store(self.name, self.location, **options)


class FakeClock:
    """Epoch seconds that move only when the test says so (`Store(clock=...)`)."""

    def __init__(self, start: float = 1_795_593_600.0) -> None:   # 2026-11-25 08:00 UTC
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
