"""`PostgresStore`: the `StateStore` on a PostgreSQL database every controller replica shares."""
from __future__ import annotations

import socket
import time

from reconciler.store.facade import DelegatingStore
from reconciler.store.applied import SqlAppliedFingerprints
from reconciler.store.drift import SqlDriftHistory
from reconciler.store.journal import SqlJournal
from reconciler.store.lease import SqlLeases
from reconciler.store.lock import DEFAULT_LOCK_TTL, SqlApplyLock
from reconciler.store.postgres.database import PostgresDatabase
from reconciler.store.records import Clock
from reconciler.store.runs import SqlRunLog


class PostgresStore(DelegatingStore):
    """The state database at `url` (`postgresql://user@host:5432/db`; the password from the
    URL, PGPASSWORD or ~/.pgpass as libpq reads them), migrated on open.

    `clock` is what records are stamped with, as in `Store`; leases are measured by the server's
    clock unless a clock is given (tests move theirs by hand)."""

    def __init__(self, url: str, *, lock_ttl: float = DEFAULT_LOCK_TTL,
                 hostname: str | None = None, clock: Clock | None = None) -> None:
        self.url = url
        self.lock_ttl = lock_ttl
        self.hostname = hostname or socket.gethostname()
        stamp = clock or time.time
        self._db = PostgresDatabase(url)
        self.path = self._db.name          # what messages call this store
        self._runs = SqlRunLog(self._db, self.hostname, stamp)
        self._journal = SqlJournal(self._db, stamp)
        self._lock = SqlApplyLock(self._db, self.hostname, lock_ttl, stamp)
        self._applied = SqlAppliedFingerprints(self._db, stamp)
        self._drift = SqlDriftHistory(self._db, stamp)
        self._leases = SqlLeases(self._db, clock)

    def __enter__(self) -> PostgresStore:
        return self
