"""What a state store must do, one protocol per concern, whatever database keeps the state.

A caller that needs one concern asks for that protocol (the apply executor needs a `Journal`,
not a whole store); `StateStore` is all of them, which is what `reconciler.store.Store` (SQLite)
implements and what a second backend implements too. The store test suite runs against
`StateStore`, so a backend that passes it can replace SQLite without a caller noticing.

What a new backend must provide:
- the five concerns below with these exact names, parameters and return types, handing out the
  frozen records of `records.py` (aware UTC datetimes, never rows);
- every write atomic and safe against other processes using the same database at the same time:
  above all `acquire_lock`, where two racing processes must never both win;
- the lock's take-over policy from `lock.py` (`check_take_over`, `holder_is_dead`) and its
  heartbeat thread (`hold`), not a policy of its own: the rules are the product's, not SQLite's;
- the schema of `schema.py` with its version, refusing a database newer than the code;
- `StoreError` (a ReconcilerError, printed without a traceback) for any database failure, with a
  message that names the database and what to do.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from reconciler.errors import ReconcilerError
from reconciler.store.records import (DriftChange, DriftItemRecord, DriftRecord, JournalEntry,
                                      LeaseInfo, LockInfo, RunRecord, StepOutcome)


class StoreError(ReconcilerError):
    """The state database cannot be opened, read or written."""


@runtime_checkable
class RunLog(Protocol):
    """Every run, kept as history: who ran what against which engine, and how it ended."""

    def start_run(self, kind: str, engine_key: str, spec_revision: str | None = None,
                  plan_digest: str | None = None, who: str | None = None,
                  host: str | None = None) -> str:
        """Record a new run and return its unique id (`records.new_run_id`)."""
        ...

    def finish_run(self, run_id: str, outcome: str, message: str | None = None) -> None:
        """Set the run's end; StoreError when there is no such run."""
        ...

    def prune_runs(self, engine_key: str, kind: str, keep: int) -> int:
        """Delete all but the newest `keep` finished runs of `kind` on `engine_key`, with their
        journal entries; return how many went. Unfinished runs are never deleted."""
        ...

    def run(self, run_id: str) -> RunRecord | None:
        ...

    def runs(self, limit: int = 50, engine_key: str | None = None) -> list[RunRecord]:
        """The newest `limit` runs, newest first."""
        ...


@runtime_checkable
class Journal(Protocol):
    """Every apply step, written before it starts and after it ends, so a crash leaves a trace."""

    def journal_begin(self, run_id: str, step_id: str, target: str, action: str,
                      disruption: str, detail: Mapping[str, Any] | None = None) -> int:
        """Record that a step starts; returns the entry id `journal_end` takes. StoreError when
        the run does not exist."""
        ...

    def journal_end(self, entry_id: int, outcome: StepOutcome, message: str | None = None,
                    duration: float | None = None) -> None:
        """Record how the step ended (duration defaults to the time since it began).
        ValueError for an outcome outside `StepOutcome`; StoreError for an unknown entry or one
        that has already ended."""
        ...

    def journal(self, run_id: str) -> list[JournalEntry]:
        """The run's steps in the order they began."""
        ...

    def unfinished_steps(self, engine_key: str,
                         exclude_run: str | None = None) -> list[JournalEntry]:
        """Steps begun but never ended, by runs on `engine_key` other than `exclude_run`."""
        ...

    def abandon_unfinished(self, engine_key: str, by_run: str) -> list[JournalEntry]:
        """End what other runs on `engine_key` left open (steps `abandoned`, apply runs
        `crashed`) and return those steps, so each is reported once."""
        ...


@runtime_checkable
class ApplyLock(Protocol):
    """At most one apply per engine, across processes and hosts (policy in `lock.py`)."""

    def acquire_lock(self, engine_key: str, run_id: str, who: str | None = None,
                     host: str | None = None, pid: int | None = None, *,
                     force_unlock: str | None = None) -> LockInfo:
        """Take the lock for `run_id` (re-entrant for the same run), or raise LockedError."""
        ...

    def heartbeat(self, engine_key: str, run_id: str) -> None:
        """Refresh the holder's heartbeat; LockedError when `run_id` no longer holds the lock."""
        ...

    def release_lock(self, engine_key: str, run_id: str) -> bool:
        """Release the lock if `run_id` holds it; False when it did not (nothing changed)."""
        ...

    def lock_info(self, engine_key: str) -> LockInfo | None:
        ...

    def lock_is_dead(self, info: LockInfo) -> bool:
        """Whether `acquire_lock` would consider this holder dead (for status output)."""
        ...

    def lock(self, engine_key: str, run_id: str, who: str | None = None,
             host: str | None = None, pid: int | None = None, *,
             force_unlock: str | None = None,
             heartbeat_every: float | None = None) -> AbstractContextManager[LockInfo]:
        """Hold the lock for a `with` block, heartbeating from a background thread every
        `heartbeat_every` seconds (default a quarter of the TTL; 0 turns it off)."""
        ...


@runtime_checkable
class AppliedFingerprints(Protocol):
    """Per object, the fingerprint of the desired state last applied: pending vs. drift."""

    def record_applied(self, engine_key: str, object_key: str, desired_fingerprint: str,
                       run_id: str) -> None:
        ...

    def applied(self, engine_key: str) -> dict[str, str]:
        """Object key -> fingerprint, for every object applied on `engine_key`."""
        ...


@runtime_checkable
class DriftHistory(Protocol):
    """Every drift item with when it was first seen, last seen and resolved."""

    def record_drift(self, engine_key: str, items: Iterable[DriftItemRecord],
                     at: datetime | float | None = None, *,
                     scope: Iterable[str] | None = None) -> DriftChange:
        """Record everything one observation found at `at` (default now; naive datetimes are a
        ValueError). Items seen before keep their first-seen time; open items not seen now are
        resolved, except, with `scope`, those of objects outside it (they were not observed)."""
        ...

    def drift_since(self, engine_key: str) -> dict[tuple[str, str, str], datetime]:
        """Open drift items of `engine_key`, (key, cls, message) -> when first seen."""
        ...

    def drift_history(self, engine_key: str, *, limit: int = 200,
                      object_key: str | None = None,
                      include_open: bool = True) -> list[DriftRecord]:
        """Drift items of `engine_key`, open and resolved, newest first."""
        ...


@runtime_checkable
class Leases(Protocol):
    """Who leads what, until when: the controllers' leader election (policy in `lease.py`).

    Every contender must read "now" from one clock: SQLite, on one machine, reads the store's;
    a server database reads its own, so replicas on machines whose clocks differ still agree."""

    def acquire_lease(self, name: str, holder: str, ttl: float) -> LeaseInfo | None:
        """Take `name` for `holder` for `ttl` seconds from now, or renew it when `holder` has
        it; None when another holder's lease has not expired. Atomic across processes."""
        ...

    def release_lease(self, name: str, holder: str) -> bool:
        """Give `name` up if `holder` has it (a clean shutdown hands over at once)."""
        ...

    def leases(self, prefix: str = "") -> list[LeaseInfo]:
        """Every lease whose name starts with `prefix`, expired ones included, by name."""
        ...

    def lease_now(self) -> float:
        """Now, in epoch seconds, by the clock leases are measured with."""
        ...


@runtime_checkable
class StateStore(RunLog, Journal, ApplyLock, AppliedFingerprints, DriftHistory, Leases,
                 Protocol):
    """Everything gpu-reconciler remembers between runs, in one database."""

    def schema_version(self) -> int:
        ...

    def close(self) -> None:
        """Close every connection this object opened, in any thread of this process."""
        ...

    def __enter__(self) -> StateStore:
        ...

    def __exit__(self, *exc: object) -> None:
        ...
