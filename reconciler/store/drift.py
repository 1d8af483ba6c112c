"""Drift history: the `DriftHistory` of `interface.py` over the `drift` table, in SQLite and
PostgreSQL alike (sql.py).

One row per occurrence of a drift item (object, class, message): an item seen again keeps its
row and first-seen time, so /status can say "drifted since 07:00"; an item that goes away is
resolved; one that comes back later is a new occurrence with a new row. A partial unique index
keeps at most one open row per item.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from reconciler.store.records import (Clock, DriftChange, DriftItemRecord, DriftRecord,
                                      to_datetime, to_epoch)
from reconciler.store.sql import SqlDatabase


class SqlDriftHistory:
    def __init__(self, db: SqlDatabase, clock: Clock = time.time) -> None:
        self._db = db
        self._clock = clock

    def record_drift(self, engine_key: str, items: Iterable[DriftItemRecord],
                     at: datetime | float | None = None, *,
                     scope: Iterable[str] | None = None) -> DriftChange:
        """Record the drift seen by one full observation of `engine_key` at `at`.

        Items seen before keep their first-seen time; open items not seen now are resolved.
        With `scope` (object keys), only those objects were observed: others stay as they are.
        """
        when = to_epoch(at, self._clock)
        current = {(i.key, i.cls, i.message) for i in items}
        in_scope = None if scope is None else set(scope)
        new: list[DriftItemRecord] = []
        resolved: list[DriftItemRecord] = []
        with self._db.write("record drift", serialize=f"drift:{engine_key}") as conn:
            open_rows = conn.execute(
                "SELECT drift_id, object_key, cls, message FROM drift WHERE engine_key = ? AND "
                "resolved_at IS NULL", (engine_key,)).fetchall()
            known = {(k, c, m): d for d, k, c, m in open_rows}
            # Batched: on a database server each statement is a round trip.
            conn.executemany("UPDATE drift SET last_seen = ? WHERE drift_id = ?",
                             [(when, known[i]) for i in sorted(current) if i in known])
            fresh = [i for i in sorted(current) if i not in known]
            conn.executemany(
                "INSERT INTO drift (engine_key, object_key, cls, message, first_seen, last_seen)"
                " VALUES (?, ?, ?, ?, ?, ?)", [(engine_key, *i, when, when) for i in fresh])
            new.extend(DriftItemRecord(*i) for i in fresh)
            gone = [(ident, drift_id) for ident, drift_id in sorted(known.items())
                    if ident not in current and (in_scope is None or ident[0] in in_scope)]
            conn.executemany("UPDATE drift SET resolved_at = ? WHERE drift_id = ?",
                             [(when, drift_id) for _, drift_id in gone])
            resolved.extend(DriftItemRecord(*ident) for ident, _ in gone)
        return DriftChange(tuple(new), tuple(resolved))

    def drift_since(self, engine_key: str) -> dict[tuple[str, str, str], datetime]:
        """Open drift items of `engine_key` -> when each was first seen."""
        rows = self._db.read("read drift", lambda c: c.execute(
            "SELECT object_key, cls, message, first_seen FROM drift WHERE engine_key = ? AND "
            "resolved_at IS NULL", (engine_key,)).fetchall())
        return {(k, c, m): to_datetime(t) for k, c, m, t in rows}  # type: ignore[misc]

    def drift_history(self, engine_key: str, *, limit: int = 200,
                      object_key: str | None = None,
                      include_open: bool = True) -> list[DriftRecord]:
        """Drift items of `engine_key`, open and resolved, newest first."""
        sql = ("SELECT object_key, cls, message, first_seen, last_seen, resolved_at FROM drift "
               "WHERE engine_key = ?")
        params: list[Any] = [engine_key]
        if object_key is not None:
            sql += " AND object_key = ?"
            params.append(object_key)
        if not include_open:
            sql += " AND resolved_at IS NOT NULL"
        sql += " ORDER BY first_seen DESC, drift_id DESC LIMIT ?"
        params.append(limit)
        rows = self._db.read("read drift history", lambda c: c.execute(sql, params).fetchall())
        return [DriftRecord(k, c, m, to_datetime(f), to_datetime(l),  # type: ignore[arg-type]
                            to_datetime(r)) for k, c, m, f, l, r in rows]
