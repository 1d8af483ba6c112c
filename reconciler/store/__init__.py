"""The state store: runs, the apply journal, the apply lock, applied fingerprints, drift history.

What gpu-reconciler remembers between runs (docs/store.md). The package is split by concern so
that a second database can be added as one more implementation of the same interface:

    interface.py   the contract: one Protocol per concern, `StateStore` for all, `StoreError`
    records.py     the frozen records every backend hands out, run ids, time conversions
    schema.py      the tables and their migrations, shared by every SQL backend
    liveness.py    is a process on this host provably gone? (the lock's take-over rule)
    lock.py        the lock's take-over policy and heartbeat thread (any backend) + SQLite
    db.py          the SQLite file: connections, transactions, errors, migrating on open
    runs.py journal.py applied.py drift.py   the other concerns, in SQLite

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

from reconciler.store.applied import SqliteAppliedFingerprints
from reconciler.store.db import BUSY_TIMEOUT_MS, DEFAULT_PATH, SqliteDatabase
from reconciler.store.drift import SqliteDriftHistory
from reconciler.store.interface import (AppliedFingerprints, ApplyLock, DriftHistory, Journal,
                                        RunLog, StateStore, StoreError)
from reconciler.store.journal import SqliteJournal
from reconciler.store.liveness import process_gone
from reconciler.store.lock import DEFAULT_LOCK_TTL, SqliteApplyLock
from reconciler.store.records import (ABANDONED, Clock, DriftChange, DriftItemRecord,
                                      DriftRecord, JournalEntry, LockInfo, RunRecord, StepOutcome,
                                      new_run_id)
from reconciler.store.runs import SqliteRunLog
from reconciler.store.schema import SCHEMA_VERSION

__all__ = [
    "ABANDONED", "BUSY_TIMEOUT_MS", "DEFAULT_LOCK_TTL", "DEFAULT_PATH", "SCHEMA_VERSION",
    "AppliedFingerprints", "ApplyLock", "DriftChange", "DriftHistory", "DriftItemRecord",
    "DriftRecord", "Journal", "JournalEntry", "LockInfo", "RunLog", "RunRecord", "StateStore",
    "StepOutcome", "Store", "StoreError", "new_run_id", "process_gone",
]


class Store:
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
        self._runs = SqliteRunLog(self._db, self.hostname, clock)
        self._journal = SqliteJournal(self._db, clock)
        self._lock = SqliteApplyLock(self._db, self.hostname, lock_ttl, clock)
        self._applied = SqliteAppliedFingerprints(self._db, clock)
        self._drift = SqliteDriftHistory(self._db, clock)

    def schema_version(self) -> int:
        return self._db.schema_version()

    def close(self) -> None:
        """Close every connection this object opened (in any thread of this process)."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, kind: str, engine_key: str, spec_revision: str | None = None,
                  plan_digest: str | None = None, who: str | None = None,
                  host: str | None = None) -> str:
        return self._runs.start_run(kind, engine_key, spec_revision, plan_digest, who, host)

    def finish_run(self, run_id: str, outcome: str, message: str | None = None) -> None:
        self._runs.finish_run(run_id, outcome, message)

    def prune_runs(self, engine_key: str, kind: str, keep: int) -> int:
        return self._runs.prune_runs(engine_key, kind, keep)

    def run(self, run_id: str) -> RunRecord | None:
        return self._runs.run(run_id)

    def runs(self, limit: int = 50, engine_key: str | None = None) -> list[RunRecord]:
        return self._runs.runs(limit, engine_key)

    # -- journal ------------------------------------------------------------------------------

    def journal_begin(self, run_id: str, step_id: str, target: str, action: str,
                      disruption: str, detail: Mapping[str, Any] | None = None) -> int:
        return self._journal.journal_begin(run_id, step_id, target, action, disruption, detail)

    def journal_end(self, entry_id: int, outcome: StepOutcome, message: str | None = None,
                    duration: float | None = None) -> None:
        self._journal.journal_end(entry_id, outcome, message, duration)

    def journal(self, run_id: str) -> list[JournalEntry]:
        return self._journal.journal(run_id)

    def unfinished_steps(self, engine_key: str,
                         exclude_run: str | None = None) -> list[JournalEntry]:
        return self._journal.unfinished_steps(engine_key, exclude_run)

    def abandon_unfinished(self, engine_key: str, by_run: str) -> list[JournalEntry]:
        return self._journal.abandon_unfinished(engine_key, by_run)

    # -- lock ---------------------------------------------------------------------------------

    def acquire_lock(self, engine_key: str, run_id: str, who: str | None = None,
                     host: str | None = None, pid: int | None = None, *,
                     force_unlock: str | None = None) -> LockInfo:
        return self._lock.acquire_lock(engine_key, run_id, who, host, pid,
                                       force_unlock=force_unlock)

    def heartbeat(self, engine_key: str, run_id: str) -> None:
        self._lock.heartbeat(engine_key, run_id)

    def release_lock(self, engine_key: str, run_id: str) -> bool:
        return self._lock.release_lock(engine_key, run_id)

    def lock_info(self, engine_key: str) -> LockInfo | None:
        return self._lock.lock_info(engine_key)

    def lock_is_dead(self, info: LockInfo) -> bool:
        return self._lock.lock_is_dead(info)

    @contextmanager
    def lock(self, engine_key: str, run_id: str, who: str | None = None,
             host: str | None = None, pid: int | None = None, *,
             force_unlock: str | None = None,
             heartbeat_every: float | None = None) -> Iterator[LockInfo]:
        with self._lock.lock(engine_key, run_id, who, host, pid, force_unlock=force_unlock,
                             heartbeat_every=heartbeat_every) as info:
            yield info

    # -- applied state ------------------------------------------------------------------------

    def record_applied(self, engine_key: str, object_key: str, desired_fingerprint: str,
                       run_id: str) -> None:
        self._applied.record_applied(engine_key, object_key, desired_fingerprint, run_id)

    def applied(self, engine_key: str) -> dict[str, str]:
        return self._applied.applied(engine_key)

    # -- drift history ------------------------------------------------------------------------

    def record_drift(self, engine_key: str, items: Iterable[DriftItemRecord],
                     at: datetime | float | None = None, *,
                     scope: Iterable[str] | None = None) -> DriftChange:
        return self._drift.record_drift(engine_key, items, at, scope=scope)

    def drift_since(self, engine_key: str) -> dict[tuple[str, str, str], datetime]:
        return self._drift.drift_since(engine_key)

    def drift_history(self, engine_key: str, *, limit: int = 200,
                      object_key: str | None = None,
                      include_open: bool = True) -> list[DriftRecord]:
        return self._drift.drift_history(engine_key, limit=limit, object_key=object_key,
                                         include_open=include_open)
