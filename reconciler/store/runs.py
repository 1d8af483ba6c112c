"""Runs: the `RunLog` of `interface.py` over the `runs` table, in SQLite and PostgreSQL alike.

History is kept for good except for the kinds that run all day (controller passes, scheduled drift
reports): their callers prune them with `prune_runs`, which never touches an unfinished run,
because crash recovery reads those.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from reconciler.store.interface import StoreError
from reconciler.store.records import Clock, RunRecord, default_who, new_run_id, to_datetime
from reconciler.store.sql import SqlDatabase

_COLUMNS = ("run_id, kind, engine_key, spec_revision, plan_digest, who, host, started_at, "
            "finished_at, outcome, message")


class SqlRunLog:
    """Runs of every process using the database; `hostname` is recorded when a caller names
    none."""

    def __init__(self, db: SqlDatabase, hostname: str, clock: Clock = time.time) -> None:
        self._db = db
        self._hostname = hostname
        self._clock = clock

    def start_run(self, kind: str, engine_key: str, spec_revision: str | None = None,
                  plan_digest: str | None = None, who: str | None = None,
                  host: str | None = None) -> str:
        now = self._clock()
        who = who or default_who()
        host = host or self._hostname
        # Two runs started in the same second draw 4 random hex digits each; on the rare
        # collision the primary key refuses the second and it draws again.
        for _ in range(20):
            run_id = new_run_id(now)
            try:
                # Serialized so `started_seq` (the start order) is unique and increasing.
                with self._db.write("start a run", serialize="runs") as conn:
                    conn.execute(
                        "INSERT INTO runs (run_id, kind, engine_key, spec_revision, plan_digest,"
                        " who, host, pid, started_at, started_seq) VALUES (?, ?, ?, ?, ?, ?, ?,"
                        " ?, ?, (SELECT COALESCE(MAX(started_seq), 0) + 1 FROM runs))",
                        (run_id, kind, engine_key, spec_revision, plan_digest, who, host,
                         os.getpid(), now))
                return run_id
            except StoreError as exc:
                if not self._db.is_unique_violation(exc):
                    raise
        raise StoreError("could not allocate a unique run id")  # pragma: no cover

    def finish_run(self, run_id: str, outcome: str, message: str | None = None) -> None:
        with self._db.write("finish a run") as conn:
            cur = conn.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, message = ? WHERE run_id = ?",
                (self._clock(), outcome, message, run_id))
            if cur.rowcount == 0:
                raise StoreError(f"no run {run_id!r} in {self._db.name}")

    def prune_runs(self, engine_key: str, kind: str, keep: int) -> int:
        """Delete all but the newest `keep` finished runs of `kind` on `engine_key` (with their
        journal entries); returns how many went. For the kinds that run all day (controller
        passes, scheduled drift reports), whose history would otherwise grow without bound.
        Unfinished runs are never deleted: recovery reads them."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        with self._db.write("prune old runs") as conn:
            doomed = ("SELECT run_id FROM runs WHERE engine_key = ? AND kind = ? AND "
                      "finished_at IS NOT NULL ORDER BY started_at DESC, "
                      f"{self._db.insert_order} DESC {self._db.rest_after}")
            args = (engine_key, kind, keep)
            conn.execute(f"DELETE FROM journal WHERE run_id IN ({doomed})", args)
            cur = conn.execute(f"DELETE FROM runs WHERE run_id IN ({doomed})", args)
            return int(cur.rowcount)

    def run(self, run_id: str) -> RunRecord | None:
        row = self._db.read("read a run", lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone())
        return _run_record(row) if row else None

    def runs(self, limit: int = 50, engine_key: str | None = None) -> list[RunRecord]:
        """The newest `limit` runs, newest first."""
        where, args = ("", ()) if engine_key is None else ("WHERE engine_key = ? ",
                                                           (engine_key,))
        rows = self._db.read("list runs", lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM runs {where}ORDER BY started_at DESC, "
            f"{self._db.insert_order} DESC LIMIT ?", (*args, limit)).fetchall())
        return [_run_record(r) for r in rows]

def _run_record(row: Sequence[Any]) -> RunRecord:
    """A row selected as `_COLUMNS`."""
    return RunRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                     to_datetime(row[7]),  # type: ignore[arg-type]
                     to_datetime(row[8]), row[9], row[10])
