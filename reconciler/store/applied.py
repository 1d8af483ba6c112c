"""Applied fingerprints: the `AppliedFingerprints` of `interface.py`, in SQLite and PostgreSQL
alike (sql.py).

Per engine and object, the fingerprint of the desired state the object last converged to. The
planner compares it with today's desired fingerprint: the same fingerprint with a difference on
the engine is drift; a new fingerprint is a pending change. Only the latest counts, so each
object has one row, overwritten.
"""
from __future__ import annotations

import time

from reconciler.store.records import Clock
from reconciler.store.sql import SqlDatabase


class SqlAppliedFingerprints:
    def __init__(self, db: SqlDatabase, clock: Clock = time.time) -> None:
        self._db = db
        self._clock = clock

    def record_applied(self, engine_key: str, object_key: str, desired_fingerprint: str,
                       run_id: str) -> None:
        with self._db.write("record an applied object") as conn:
            conn.execute(
                "INSERT INTO applied (engine_key, object_key, fingerprint, run_id, applied_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (engine_key, object_key) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, run_id = excluded.run_id, "
                "applied_at = excluded.applied_at",
                (engine_key, object_key, desired_fingerprint, run_id, self._clock()))

    def applied(self, engine_key: str) -> dict[str, str]:
        rows = self._db.read("read applied objects", lambda c: c.execute(
            "SELECT object_key, fingerprint FROM applied WHERE engine_key = ?",
            (engine_key,)).fetchall())
        return {k: f for k, f in rows}
