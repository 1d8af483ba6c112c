"""The state store: runs, the apply journal, the apply lock, applied fingerprints, drift history.

What gpu-reconciler remembers between runs (docs/store.md). The package is split by concern so
that a second database can be added as one more implementation of the same interface:

    interface.py   the contract: one Protocol per concern, `StateStore` for all, `StoreError`
    records.py     the frozen records every backend hands out, run ids, time conversions
    schema.py      the tables and their migrations, shared by every SQL backend
    liveness.py    is a process on this host provably gone? (the lock's take-over rule)
    sql.py         what the concerns need of a database; each concern is written once for both
    lock.py        the lock's take-over policy, heartbeat thread and table
    runs.py journal.py applied.py drift.py   the other concerns
    lease.py       leases (the controllers' leader election): policy and table
    db.py          the SQLite file: connections, transactions, errors, migrating on open
    facade.py      `DelegatingStore`: a `StateStore` over one object per concern
    postgres/      the same store on PostgreSQL (psycopg 3, an optional extra)

`open_store(location)` opens either: a `postgresql://` URL or an SQLite file path.

`Store` is the SQLite `StateStore`: one file (WAL mode) shared by every process that works on
the same fleet. Callers construct it and use its methods; they never reach into the modules.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.store.applied import SqlAppliedFingerprints
from reconciler.store.db import BUSY_TIMEOUT_MS, DEFAULT_PATH, SqliteDatabase
from reconciler.store.drift import SqlDriftHistory
from reconciler.store.facade import DelegatingStore
from reconciler.store.interface import (AppliedFingerprints, ApplyLock, DriftHistory, Journal,
                                        Leases, RunLog, StateStore, StoreError)
from reconciler.store.journal import SqlJournal
from reconciler.store.lease import SqlLeases
from reconciler.store.liveness import process_gone
from reconciler.store.lock import DEFAULT_LOCK_TTL, SqlApplyLock
from reconciler.store.records import (ABANDONED, Clock, DriftChange, DriftItemRecord,
                                      DriftRecord, JournalEntry, LeaseInfo, LockInfo, RunRecord,
                                      StepOutcome, new_run_id)
from reconciler.store.runs import SqlRunLog
from reconciler.store.schema import SCHEMA_VERSION

__all__ = [
    "ABANDONED", "BUSY_TIMEOUT_MS", "DEFAULT_LOCK_TTL", "DEFAULT_PATH", "SCHEMA_VERSION",
    "AppliedFingerprints", "ApplyLock", "DriftChange", "DriftHistory", "DriftItemRecord",
    "DriftRecord", "Journal", "JournalEntry", "LeaseInfo", "Leases", "LockInfo", "RunLog",
    "RunRecord", "StateStore", "StepOutcome", "Store", "StoreError", "is_postgres_url",
    "new_run_id", "open_store", "process_gone",
]


class Store(DelegatingStore):
    """The state database at `path` (created with its folder when missing).

    Each method is the one of the concern that owns it; interface.py says what it promises.
    Every timestamp it writes, and the age of a lock's heartbeat, comes from `clock` (tests pass
    one they move by hand instead of sleeping).
    """

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *,
                 lock_ttl: float = DEFAULT_LOCK_TTL,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 hostname: str | None = None,
                 clock: Clock = time.time) -> None:
        self.path = Path(path)
        self.lock_ttl = lock_ttl
        self.hostname = hostname or socket.gethostname()
        self._db = SqliteDatabase(self.path, busy_timeout_ms=busy_timeout_ms)
        self._runs = SqlRunLog(self._db, self.hostname, clock)
        self._journal = SqlJournal(self._db, clock)
        self._lock = SqlApplyLock(self._db, self.hostname, lock_ttl, clock)
        self._applied = SqlAppliedFingerprints(self._db, clock)
        self._drift = SqlDriftHistory(self._db, clock)
        self._leases = SqlLeases(self._db, clock)


def open_store(location: str | os.PathLike[str] | None = None, **options: Any) -> StateStore:
    """The store at `location`: a PostgreSQL URL (`postgresql://...`, shared by controllers on
    several machines) or an SQLite file path (the embedded default). `options`: lock_ttl,
    hostname, clock."""
    if location is not None and is_postgres_url(str(location)):
        from reconciler.store.postgres import PostgresStore
        return PostgresStore(str(location), **options)
    return Store(DEFAULT_PATH if location is None else location, **options)


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    return str(location).startswith(("postgresql://", "postgres://"))
