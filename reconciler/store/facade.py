"""The `StateStore` every backend hands out: each method is the one of the concern that owns it.

A backend builds its concern objects (runs, journal, lock, applied, drift, leases) over its own
database and hands them to `DelegatingStore`; callers see one object with every method of
`interface.StateStore`, whichever database is behind it.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from reconciler.store.records import (DriftChange, DriftItemRecord, DriftRecord, JournalEntry,
                                      LeaseInfo, LockInfo, RunRecord, StepOutcome)


class DelegatingStore:
    """`StateStore` over one object per concern; `_db` has `schema_version()` and `close()`."""

    _db: Any
    _runs: Any
    _journal: Any
    _lock: Any
    _applied: Any
    _drift: Any
    _leases: Any

    def schema_version(self) -> int:
        return self._db.schema_version()

    def close(self) -> None:
        """Close every connection this object opened (in any thread of this process)."""
        self._db.close()

    def __enter__(self) -> DelegatingStore:
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

    # -- leases -------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl: float) -> LeaseInfo | None:
        return self._leases.acquire_lease(name, holder, ttl)  # type: ignore[no-any-return]

    def release_lease(self, name: str, holder: str) -> bool:
        return self._leases.release_lease(name, holder)  # type: ignore[no-any-return]

    def leases(self, prefix: str = "") -> list[LeaseInfo]:
        return self._leases.leases(prefix)  # type: ignore[no-any-return]

    def lease_now(self) -> float:
        return self._leases.lease_now()  # type: ignore[no-any-return]
