"""The drift history on PostgreSQL, the one concern that keeps SQL of its own (runs, the
journal, the apply lock, applied fingerprints and leases are written once for both backends:
runs.py, journal.py, lock.py, applied.py, lease.py). The same rules as drift.py, in PostgreSQL's
SQL; its check-then-write runs under an advisory lock named for the engine, so it is as atomic
here as under SQLite's `BEGIN IMMEDIATE`.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from reconciler.store.postgres.database import PostgresDatabase
from reconciler.store.records import (Clock, DriftChange, DriftItemRecord, DriftRecord,
                                      to_datetime, to_epoch)


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


__all__ = ["PostgresDriftHistory"]
