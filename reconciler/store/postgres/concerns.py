"""The store's concerns on PostgreSQL that keep SQL of their own: the apply lock and the drift
history (runs, the journal, applied fingerprints and leases are written once for both backends:
runs.py, journal.py, applied.py, lease.py). The same rules as the SQLite modules, in PostgreSQL's
SQL.

Each class implements one protocol of `interface.py` and takes the `PostgresDatabase`. Writes that
check and then write (the apply lock, drift) run under an advisory lock named for what they
guard, so they are as atomic here as under SQLite's `BEGIN IMMEDIATE`. The lock's take-over rules
are lock.py's: the product's, not the database's.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from reconciler.errors import LockedError
from reconciler.store.lock import DEFAULT_LOCK_TTL, check_take_over, hold, holder_is_dead
from reconciler.store.liveness import process_start
from reconciler.store.postgres.database import PostgresDatabase
from reconciler.store.records import (Clock, DriftChange, DriftItemRecord, DriftRecord,
                                      LockInfo, default_who, to_datetime, to_epoch)

_LOCK_COLUMNS = "engine_key, run_id, who, host, pid, heartbeat_at, pid_start, acquired_at"


class PostgresApplyLock:
    def __init__(self, db: PostgresDatabase, hostname: str, ttl: float = DEFAULT_LOCK_TTL,
                 clock: Clock = time.time) -> None:
        self._db = db
        self._hostname = hostname
        self._ttl = ttl
        self._clock = clock

    def acquire_lock(self, engine_key: str, run_id: str, who: str | None = None,
                     host: str | None = None, pid: int | None = None, *,
                     force_unlock: str | None = None) -> LockInfo:
        who = who or default_who()
        host = host or self._hostname
        pid = os.getpid() if pid is None else pid
        pid_start = process_start(pid) if host == self._hostname else None
        with self._db.write("take the apply lock", serialize=f"lock:{engine_key}") as conn:
            now = self._clock()
            row = conn.execute(f"SELECT {_LOCK_COLUMNS} FROM locks WHERE engine_key = %s",
                               (engine_key,)).fetchone()
            taken_over: str | None = None
            if row is not None:
                held = _lock_info(row)
                if held.run_id != run_id:
                    check_take_over(held, row[6], now, force_unlock,
                                    ttl=self._ttl, hostname=self._hostname)
                    taken_over = held.run_id
                else:
                    conn.execute("UPDATE locks SET heartbeat_at = %s WHERE engine_key = %s",
                                 (now, engine_key))
                    return LockInfo(engine_key, run_id, held.who, held.host, held.pid,
                                    held.acquired_at, to_datetime(now) or held.heartbeat_at)
            conn.execute(
                "INSERT INTO locks (engine_key, run_id, who, host, pid, pid_start, acquired_at,"
                " heartbeat_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (engine_key)"
                " DO UPDATE SET run_id = excluded.run_id, who = excluded.who, host = "
                "excluded.host, pid = excluded.pid, pid_start = excluded.pid_start, acquired_at"
                " = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at",
                (engine_key, run_id, who, host, pid, pid_start, now, now))
        stamp = to_datetime(now)
        assert stamp is not None
        return LockInfo(engine_key, run_id, who, host, pid, stamp, stamp, taken_over)

    def heartbeat(self, engine_key: str, run_id: str) -> None:
        with self._db.write("refresh the lock heartbeat", serialize=f"lock:{engine_key}") as conn:
            cur = conn.execute("UPDATE locks SET heartbeat_at = %s WHERE engine_key = %s AND "
                               "run_id = %s", (self._clock(), engine_key, run_id))
            if cur.rowcount == 0:
                row = conn.execute("SELECT run_id, who, host FROM locks WHERE engine_key = %s",
                                   (engine_key,)).fetchone()
                now_held = (f"it is now held by run {row[0]} ({row[1]} on {row[2]})" if row
                            else "nobody holds it now")
                raise LockedError(f"run {run_id} no longer holds the apply lock of "
                                  f"{engine_key}: {now_held}")

    def release_lock(self, engine_key: str, run_id: str) -> bool:
        with self._db.write("release the apply lock", serialize=f"lock:{engine_key}") as conn:
            return conn.execute("DELETE FROM locks WHERE engine_key = %s AND run_id = %s",
                                (engine_key, run_id)).rowcount > 0

    def lock_info(self, engine_key: str) -> LockInfo | None:
        row = self._db.read("read the apply lock", lambda c: c.execute(
            f"SELECT {_LOCK_COLUMNS} FROM locks WHERE engine_key = %s", (engine_key,)).fetchone())
        return _lock_info(row) if row else None

    def lock_is_dead(self, info: LockInfo) -> bool:
        row = self._db.read("read the apply lock", lambda c: c.execute(
            "SELECT pid_start FROM locks WHERE engine_key = %s AND run_id = %s",
            (info.engine_key, info.run_id)).fetchone())
        return holder_is_dead(info, row[0] if row else None, self._clock(), ttl=self._ttl,
                              hostname=self._hostname)

    def lock(self, engine_key: str, run_id: str, who: str | None = None,
             host: str | None = None, pid: int | None = None, *,
             force_unlock: str | None = None,
             heartbeat_every: float | None = None) -> AbstractContextManager[LockInfo]:
        every = self._ttl / 4 if heartbeat_every is None else heartbeat_every
        return hold(self, engine_key, run_id, who, host, pid, force_unlock=force_unlock,
                    heartbeat_every=every, thread_done=self._db.close_thread_connection)


def _lock_info(row: Any) -> LockInfo:
    return LockInfo(row[0], row[1], row[2], row[3], int(row[4]),
                    to_datetime(row[7]), to_datetime(row[5]))  # type: ignore[arg-type]


class PostgresDriftHistory:
    def __init__(self, db: PostgresDatabase, clock: Clock = time.time) -> None:
        self._db = db
        self._clock = clock

    def record_drift(self, engine_key: str, items: Iterable[DriftItemRecord],
                     at: datetime | float | None = None, *,
                     scope: Iterable[str] | None = None) -> DriftChange:
        when = to_epoch(at, self._clock)
        current = {(i.key, i.cls, i.message) for i in items}
        in_scope = None if scope is None else set(scope)
        new: list[DriftItemRecord] = []
        resolved: list[DriftItemRecord] = []
        with self._db.write("record drift", serialize=f"drift:{engine_key}") as conn:
            open_rows = conn.execute(
                "SELECT drift_id, object_key, cls, message FROM drift WHERE engine_key = %s AND "
                "resolved_at IS NULL", (engine_key,)).fetchall()
            known = {(k, c, m): d for d, k, c, m in open_rows}
            seen = [known[i] for i in sorted(current) if i in known]
            if seen:
                conn.execute("UPDATE drift SET last_seen = %s WHERE drift_id = ANY(%s)",
                             (when, seen))
            fresh = [i for i in sorted(current) if i not in known]
            if fresh:
                with conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO drift (engine_key, object_key, cls, message, first_seen,"
                        " last_seen) VALUES (%s, %s, %s, %s, %s, %s)",
                        [(engine_key, *ident, when, when) for ident in fresh])
                new.extend(DriftItemRecord(*ident) for ident in fresh)
            gone = []
            for ident, drift_id in sorted(known.items()):
                if ident in current or (in_scope is not None and ident[0] not in in_scope):
                    continue
                gone.append(drift_id)
                resolved.append(DriftItemRecord(*ident))
            if gone:
                conn.execute("UPDATE drift SET resolved_at = %s WHERE drift_id = ANY(%s)",
                             (when, gone))
        return DriftChange(tuple(new), tuple(resolved))

    def drift_since(self, engine_key: str) -> dict[tuple[str, str, str], datetime]:
        rows = self._db.read("read drift", lambda c: c.execute(
            "SELECT object_key, cls, message, first_seen FROM drift WHERE engine_key = %s AND "
            "resolved_at IS NULL", (engine_key,)).fetchall())
        return {(k, c, m): to_datetime(t) for k, c, m, t in rows}  # type: ignore[misc]

    def drift_history(self, engine_key: str, *, limit: int = 200,
                      object_key: str | None = None,
                      include_open: bool = True) -> list[DriftRecord]:
        sql = ("SELECT object_key, cls, message, first_seen, last_seen, resolved_at FROM drift "
               "WHERE engine_key = %s")
        params: list[Any] = [engine_key]
        if object_key is not None:
            sql += " AND object_key = %s"
            params.append(object_key)
        if not include_open:
            sql += " AND resolved_at IS NOT NULL"
        sql += " ORDER BY first_seen DESC, drift_id DESC LIMIT %s"
        params.append(limit)
        rows = self._db.read("read drift history", lambda c: c.execute(sql, params).fetchall())
        return [DriftRecord(k, c, m, to_datetime(f), to_datetime(l),  # type: ignore[arg-type]
                            to_datetime(r)) for k, c, m, f, l, r in rows]


__all__ = ["PostgresApplyLock", "PostgresDriftHistory"]
