"""The step journal: the `Journal` of `interface.py` over the `journal` table, in SQLite and
PostgreSQL alike.

A step is written before it starts and again when it ends, each in its own committed
transaction, so a step begun and never ended is exactly what a crash or `kill -9` leaves behind.
The next apply, once it holds the engine's lock, reads those (`unfinished_steps`: every such step
then belongs to a dead run) and closes them (`abandon_unfinished`) so they are reported once.
Nothing is replayed: the new run re-observes and re-plans.
"""
from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.store.interface import StoreError
from reconciler.store.records import (ABANDONED, STEP_OUTCOMES, Clock, JournalEntry,
                                      StepOutcome, to_datetime)
from reconciler.store.sql import SqlDatabase

_COLUMNS = ("entry_id, run_id, step_id, target, action, disruption, detail, started_at, "
            "finished_at, outcome, message, duration")
_COLUMNS_OF_J = ", ".join(f"j.{c.strip()}" for c in _COLUMNS.split(","))


class SqlJournal:
    def __init__(self, db: SqlDatabase, clock: Clock = time.time) -> None:
        self._db = db
        self._clock = clock

    def journal_begin(self, run_id: str, step_id: str, target: str, action: str,
                      disruption: str, detail: Mapping[str, Any] | None = None) -> int:
        payload = json.dumps(dict(detail or {}), sort_keys=True, default=str)
        try:
            with self._db.write("journal a step") as conn:
                return self._db.insert_id(
                    conn, "INSERT INTO journal (run_id, step_id, target, action, disruption,"
                    " detail, started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, step_id, target, action, disruption, payload, self._clock()),
                    "entry_id")
        except StoreError as exc:
            if self._db.is_foreign_key_violation(exc):
                raise StoreError(f"cannot journal step {step_id!r}: no run {run_id!r}") from exc
            raise

    def journal_end(self, entry_id: int, outcome: StepOutcome, message: str | None = None,
                    duration: float | None = None) -> None:
        if outcome not in STEP_OUTCOMES:
            raise ValueError(f"step outcome must be one of {sorted(STEP_OUTCOMES)}, "
                             f"not {outcome!r}")
        with self._db.write("journal the end of a step") as conn:
            row = conn.execute("SELECT started_at, finished_at FROM journal WHERE entry_id = ?"
                               f"{self._db.for_update}", (entry_id,)).fetchone()
            if row is None:
                raise StoreError(f"no journal entry {entry_id}")
            if row[1] is not None:
                raise StoreError(f"journal entry {entry_id} has already ended")
            now = self._clock()
            conn.execute("UPDATE journal SET finished_at = ?, outcome = ?, message = ?,"
                         " duration = ? WHERE entry_id = ?",
                         (now, outcome, message,
                          duration if duration is not None else now - row[0], entry_id))

    def journal(self, run_id: str) -> list[JournalEntry]:
        rows = self._db.read("read the journal", lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM journal WHERE run_id = ? ORDER BY entry_id",
            (run_id,)).fetchall())
        return [_journal_entry(r) for r in rows]

    def unfinished_steps(self, engine_key: str,
                         exclude_run: str | None = None) -> list[JournalEntry]:
        """Steps begun but never ended, by runs on `engine_key` other than `exclude_run`.

        Call it while holding the engine's lock: then every such step belongs to a run that died.
        """
        rows = self._db.read("read unfinished steps", lambda c: c.execute(
            f"SELECT {_COLUMNS_OF_J} FROM journal j "
            "JOIN runs r ON r.run_id = j.run_id WHERE r.engine_key = ? AND j.finished_at IS NULL"
            f" AND j.run_id {self._db.differs_from} ? ORDER BY j.entry_id",
            (engine_key, exclude_run)).fetchall())
        return [_journal_entry(r) for r in rows]

    def abandon_unfinished(self, engine_key: str, by_run: str) -> list[JournalEntry]:
        """Close what dead runs left open, so it is reported once, and return it.

        Their steps end as `abandoned` and their runs as `crashed`; nothing is repaired here, the
        next plan re-observes and converges.
        """
        with self._db.write("close abandoned steps", serialize=f"journal:{engine_key}") as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS_OF_J} FROM journal j "
                "JOIN runs r ON r.run_id = j.run_id WHERE r.engine_key = ? AND "
                "j.finished_at IS NULL AND j.run_id != ? ORDER BY j.entry_id",
                (engine_key, by_run)).fetchall()
            now = self._clock()
            note = f"its run ended without finishing this step; re-planned by run {by_run}"
            conn.execute(
                "UPDATE journal SET finished_at = ?, outcome = ?, message = ? WHERE "
                "finished_at IS NULL AND run_id != ? AND run_id IN "
                "(SELECT run_id FROM runs WHERE engine_key = ?)",
                (now, ABANDONED, note, by_run, engine_key))
            conn.execute(
                "UPDATE runs SET finished_at = ?, outcome = 'crashed', message = ? WHERE "
                "engine_key = ? AND finished_at IS NULL AND run_id != ? AND kind = 'apply'",
                (now, f"ended without finishing; found by run {by_run}", engine_key, by_run))
        return [_journal_entry(r) for r in rows]


def _journal_entry(row: Sequence[Any]) -> JournalEntry:
    """A row selected as `_COLUMNS`; the detail is stored as JSON text."""
    return JournalEntry(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                        to_datetime(row[7]),  # type: ignore[arg-type]
                        to_datetime(row[8]), row[9], row[10], row[11])
