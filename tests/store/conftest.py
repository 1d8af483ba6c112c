"""Fixtures for the state store suite: each test runs once per backend, on a database of its own.

Tests take `store` (a `StateStore`, as callers see it) or, when they reopen the database or open
it from another process, `backend`. Time is a `FakeClock` the test moves: lock expiry is tested
by advancing it past the TTL, never by sleeping through a tiny one.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store import StateStore
from tests.store.backends import BACKENDS, Backend, FakeClock, fresh_location


# PostgreSQL runs on a throwaway server the first such test starts (tests/conftest.py).
PARAMS = [pytest.param(name, marks=[pytest.mark.postgres] if name == "postgres" else [],
                       id=name) for name in BACKENDS]


@pytest.fixture(params=PARAMS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None
    return Backend(request.param, fresh_location(request.param, tmp_path, server))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(backend: Backend, clock: FakeClock) -> Iterator[StateStore]:
    s = backend.open(clock=clock)
    yield s
    s.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """For the SQLite-only tests: where the state file of this test goes."""
    return tmp_path / "state" / "state.db"
