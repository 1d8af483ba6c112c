"""The state store: runs, the apply journal, the apply lock, applied fingerprints, drift history.

One SQLite file (stdlib `sqlite3`, WAL mode) shared by every process that works on the same fleet.
Each thread of each process gets its own connection, and every write is a short `BEGIN IMMEDIATE`
transaction, so the CLI, a controller and a second controller can use the file at the same time.
The schema carries its version in `PRAGMA user_version` and is migrated in code on open.

Lock policy (see docs/store.md): one apply per engine. A lock whose holder is alive is never taken.
A holder is *dead* when its heartbeat is older than the TTL, or when it ran on this host and its
process is provably gone (no such pid, a zombie, or a different process now owns the pid). A lock
whose holder is provably gone on this host is taken over automatically; any other dead lock (holder
on another host, or a hung holder on this one) needs `force_unlock=<its run id>`.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from reconciler.errors import LockedError, ReconcilerError
from reconciler.store.liveness import process_gone, process_start
from reconciler.store.records import (ABANDONED, STEP_OUTCOMES, DriftChange, DriftItemRecord,
                                      DriftRecord, JournalEntry, LockInfo, RunRecord, StepOutcome,
                                      default_who, new_run_id, to_datetime, to_epoch)
from reconciler.store.schema import SCHEMA_VERSION, SQLITE, migrations

DEFAULT_PATH = Path(".reconciler/state.db")
DEFAULT_LOCK_TTL = 300.0        # seconds without a heartbeat before a holder counts as dead
BUSY_TIMEOUT_MS = 10_000

T = TypeVar("T")


class StoreError(ReconcilerError):
    """The state database cannot be opened, read or written."""


def _fmt(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------

class Store:
    """The state database at `path` (created with its folder when missing)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *,
                 lock_ttl: float = DEFAULT_LOCK_TTL,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                 hostname: str | None = None) -> None:
        self.path = Path(path)
        self.lock_ttl = lock_ttl
        self.hostname = hostname or socket.gethostname()
        self._busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_guard = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the state database {self.path}: "
                             f"{exc.strerror or exc}") from exc
        self._migrate()

    # -- connections and transactions -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A connection must never cross a fork: the child opens its own.
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._conns_guard:
            self._conns.append(conn)
        return conn

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            hint = (f"another process held it for more than {self._busy_timeout_ms / 1000:g}s; "
                    "retry, or find the process that keeps it open")
        elif "not a database" in text or "malformed" in text or "disk image" in text:
            hint = ("the file is not a valid state database (corrupt?); move it aside to start "
                    "afresh (run history and drift history are lost, the fleet is not affected)")
        elif "readonly" in text or "unable to open" in text:
            hint = "check the path and its permissions"
        else:
            hint = "see the SQLite message"
        return StoreError(f"state database {self.path}: cannot {doing}: {text}; {hint}")

    @contextmanager
    def _write(self, doing: str) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self._error(exc, doing) from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error(exc, doing) from exc

    def _read(self, doing: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._connect())
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from exc

    def _migrate(self) -> None:
        # Read first: an up-to-date file needs no write lock, so opening never waits on writers.
        if self.schema_version() == SCHEMA_VERSION:
            return
        with self._write("migrate the schema") as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"state database {self.path} has schema version {version}, newer than this "
                    f"version of gpu-reconciler understands ({SCHEMA_VERSION}); upgrade it")
            for step in migrations(SQLITE)[version:]:
                for statement in step:
                    conn.execute(statement)
            if version != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def schema_version(self) -> int:
        return self._read("read the schema version",
                          lambda c: int(c.execute("PRAGMA user_version").fetchone()[0]))

    def _close_thread_connection(self) -> None:
        """Close the calling thread's connection (threads that end must not leak one)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            return
        self._local.conn = None
        with self._conns_guard:
            if conn in self._conns:
                self._conns.remove(conn)
        conn.close()

    def close(self) -> None:
        """Close every connection this object opened (in any thread of this process)."""
        with self._conns_guard:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, kind: str, engine_key: str, spec_revision: str | None = None,
                  plan_digest: str | None = None, who: str | None = None,
                  host: str | None = None) -> str:
        now = time.time()
        who = who or default_who()
        host = host or self.hostname
        for _ in range(20):
            run_id = new_run_id(now)
            try:
                with self._write("start a run") as conn:
                    conn.execute(
                        "INSERT INTO runs (run_id, kind, engine_key, spec_revision, plan_digest,"
                        " who, host, pid, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (run_id, kind, engine_key, spec_revision, plan_digest, who, host,
                         os.getpid(), now))
                return run_id
            except StoreError as exc:
                if "UNIQUE" not in str(exc):
                    raise
        raise StoreError("could not allocate a unique run id")  # pragma: no cover

    def finish_run(self, run_id: str, outcome: str, message: str | None = None) -> None:
        with self._write("finish a run") as conn:
            cur = conn.execute(
                "UPDATE runs SET finished_at = ?, outcome = ?, message = ? WHERE run_id = ?",
                (time.time(), outcome, message, run_id))
            if cur.rowcount == 0:
                raise StoreError(f"no run {run_id!r} in {self.path}")

    def prune_runs(self, engine_key: str, kind: str, keep: int) -> int:
        """Delete all but the newest `keep` finished runs of `kind` on `engine_key` (with their
        journal entries); returns how many went. For the kinds that run all day (controller
        passes, scheduled drift reports), whose history would otherwise grow without bound.
        Unfinished runs are never deleted: recovery reads them."""
        if keep < 0:
            raise ValueError("keep must be >= 0")
        with self._write("prune old runs") as conn:
            doomed = ("SELECT run_id FROM runs WHERE engine_key = ? AND kind = ? AND "
                      "finished_at IS NOT NULL ORDER BY started_at DESC, rowid DESC "
                      "LIMIT -1 OFFSET ?")
            args = (engine_key, kind, keep)
            conn.execute(f"DELETE FROM journal WHERE run_id IN ({doomed})", args)
            cur = conn.execute(f"DELETE FROM runs WHERE run_id IN ({doomed})", args)
            return cur.rowcount

    def run(self, run_id: str) -> RunRecord | None:
        row = self._read("read a run", lambda c: c.execute(
            f"SELECT {_RUN_COLS} FROM runs WHERE run_id = ?", (run_id,)).fetchone())
        return _run(row) if row else None

    def runs(self, limit: int = 50, engine_key: str | None = None) -> list[RunRecord]:
        """The newest `limit` runs, newest first."""
        def query(c: sqlite3.Connection) -> list[tuple[Any, ...]]:
            if engine_key is None:
                return c.execute(f"SELECT {_RUN_COLS} FROM runs ORDER BY started_at DESC, "
                                 "rowid DESC LIMIT ?", (limit,)).fetchall()
            return c.execute(f"SELECT {_RUN_COLS} FROM runs WHERE engine_key = ? ORDER BY "
                             "started_at DESC, rowid DESC LIMIT ?", (engine_key, limit)).fetchall()
        return [_run(r) for r in self._read("list runs", query)]

    # -- journal ------------------------------------------------------------------------------

    def journal_begin(self, run_id: str, step_id: str, target: str, action: str,
                      disruption: str, detail: Mapping[str, Any] | None = None) -> int:
        payload = json.dumps(dict(detail or {}), sort_keys=True, default=str)
        try:
            with self._write("journal a step") as conn:
                cur = conn.execute(
                    "INSERT INTO journal (run_id, step_id, target, action, disruption, detail,"
                    " started_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (run_id, step_id, target, action, disruption, payload, time.time()))
                return int(cur.lastrowid or 0)
        except StoreError as exc:
            if "FOREIGN KEY" in str(exc):
                raise StoreError(f"cannot journal step {step_id!r}: no run {run_id!r}") from exc
            raise

    def journal_end(self, entry_id: int, outcome: StepOutcome, message: str | None = None,
                    duration: float | None = None) -> None:
        if outcome not in STEP_OUTCOMES:
            raise ValueError(f"step outcome must be one of {sorted(STEP_OUTCOMES)}, "
                             f"not {outcome!r}")
        with self._write("journal the end of a step") as conn:
            row = conn.execute("SELECT started_at, finished_at FROM journal WHERE entry_id = ?",
                               (entry_id,)).fetchone()
            if row is None:
                raise StoreError(f"no journal entry {entry_id}")
            if row[1] is not None:
                raise StoreError(f"journal entry {entry_id} has already ended")
            now = time.time()
            conn.execute("UPDATE journal SET finished_at = ?, outcome = ?, message = ?,"
                         " duration = ? WHERE entry_id = ?",
                         (now, outcome, message,
                          duration if duration is not None else now - row[0], entry_id))

    def journal(self, run_id: str) -> list[JournalEntry]:
        rows = self._read("read the journal", lambda c: c.execute(
            f"SELECT {_JOURNAL_COLS} FROM journal WHERE run_id = ? ORDER BY entry_id",
            (run_id,)).fetchall())
        return [_entry(r) for r in rows]

    def unfinished_steps(self, engine_key: str,
                         exclude_run: str | None = None) -> list[JournalEntry]:
        """Steps begun but never ended, by runs on `engine_key` other than `exclude_run`.

        Call it while holding the engine's lock: then every such step belongs to a run that died.
        """
        rows = self._read("read unfinished steps", lambda c: c.execute(
            f"SELECT {_JOURNAL_COLS_J} FROM journal j "
            "JOIN runs r ON r.run_id = j.run_id WHERE r.engine_key = ? AND j.finished_at IS NULL"
            " AND j.run_id IS NOT ? ORDER BY j.entry_id", (engine_key, exclude_run)).fetchall())
        return [_entry(r) for r in rows]

    def abandon_unfinished(self, engine_key: str, by_run: str) -> list[JournalEntry]:
        """Close what dead runs left open, so it is reported once, and return it.

        Their steps end as `abandoned` and their runs as `crashed`; nothing is repaired here, the
        next plan re-observes and converges.
        """
        with self._write("close abandoned steps") as conn:
            rows = conn.execute(
                f"SELECT {_JOURNAL_COLS_J} FROM journal j "
                "JOIN runs r ON r.run_id = j.run_id WHERE r.engine_key = ? AND "
                "j.finished_at IS NULL AND j.run_id != ? ORDER BY j.entry_id",
                (engine_key, by_run)).fetchall()
            now = time.time()
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
        return [_entry(r) for r in rows]

    # -- lock ---------------------------------------------------------------------------------

    def acquire_lock(self, engine_key: str, run_id: str, who: str | None = None,
                     host: str | None = None, pid: int | None = None, *,
                     force_unlock: str | None = None) -> LockInfo:
        """Take the apply lock of `engine_key` for `run_id`, or raise LockedError saying why not."""
        who = who or default_who()
        host = host or self.hostname
        pid = os.getpid() if pid is None else pid
        pid_start = process_start(pid) if host == self.hostname else None
        with self._write("take the apply lock") as conn:
            now = time.time()
            row = conn.execute(f"SELECT {_LOCK_COLS} FROM locks WHERE engine_key = ?",
                               (engine_key,)).fetchone()
            taken_over: str | None = None
            if row is not None:
                held = _lock(row)
                if held.run_id != run_id:
                    self._may_take_over(held, row[6], now, force_unlock)
                    taken_over = held.run_id
                else:
                    # Re-entrant for the same run: refresh the heartbeat, keep the holder.
                    conn.execute("UPDATE locks SET heartbeat_at = ? WHERE engine_key = ?",
                                 (now, engine_key))
                    return LockInfo(engine_key, run_id, held.who, held.host, held.pid,
                                    held.acquired_at, to_datetime(now) or held.heartbeat_at)
            conn.execute(
                "INSERT OR REPLACE INTO locks (engine_key, run_id, who, host, pid, pid_start,"
                " acquired_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (engine_key, run_id, who, host, pid, pid_start, now, now))
        stamp = to_datetime(now)
        assert stamp is not None
        return LockInfo(engine_key, run_id, who, host, pid, stamp, stamp, taken_over)

    def _may_take_over(self, held: LockInfo, pid_start: int | None, now: float,
                       force_unlock: str | None) -> None:
        gone_here = held.host == self.hostname and process_gone(held.pid, pid_start)
        stale = now - held.heartbeat_at.timestamp() > self.lock_ttl
        holder = (f"run {held.run_id} (by {held.who} on {held.host}, pid {held.pid}, "
                  f"since {_fmt(held.acquired_at)}, last heartbeat {_fmt(held.heartbeat_at)})")
        if gone_here:
            return  # its process no longer exists on this host: nothing can be racing us
        if not stale:
            raise LockedError(
                f"apply lock of {held.engine_key} is held by {holder}, which is alive; wait for "
                f"it to finish (a controller shows its progress on /status) or stop it first")
        if force_unlock is None:
            raise LockedError(
                f"apply lock of {held.engine_key} is held by {holder}; its heartbeat is older "
                f"than {self.lock_ttl:g}s so it looks dead, but it cannot be proved from here. "
                f"Make sure it is not running, then take over with --force-unlock {held.run_id}")
        if force_unlock != held.run_id:
            raise LockedError(
                f"--force-unlock {force_unlock} does not match the holder of the apply lock of "
                f"{held.engine_key}: {holder}; use --force-unlock {held.run_id}")

    def heartbeat(self, engine_key: str, run_id: str) -> None:
        """Refresh the holder's heartbeat; LockedError when the lock is no longer ours."""
        with self._write("refresh the lock heartbeat") as conn:
            cur = conn.execute("UPDATE locks SET heartbeat_at = ? WHERE engine_key = ? AND "
                               "run_id = ?", (time.time(), engine_key, run_id))
            if cur.rowcount == 0:
                row = conn.execute("SELECT run_id, who, host FROM locks WHERE engine_key = ?",
                                   (engine_key,)).fetchone()
                now_held = (f"it is now held by run {row[0]} ({row[1]} on {row[2]})" if row
                            else "nobody holds it now")
                raise LockedError(f"run {run_id} no longer holds the apply lock of "
                                  f"{engine_key}: {now_held}")

    def release_lock(self, engine_key: str, run_id: str) -> bool:
        """Release the lock if `run_id` holds it; False when it did not (nothing changed)."""
        with self._write("release the apply lock") as conn:
            cur = conn.execute("DELETE FROM locks WHERE engine_key = ? AND run_id = ?",
                               (engine_key, run_id))
            return cur.rowcount > 0

    def lock_info(self, engine_key: str) -> LockInfo | None:
        row = self._read("read the apply lock", lambda c: c.execute(
            f"SELECT {_LOCK_COLS} FROM locks WHERE engine_key = ?", (engine_key,)).fetchone())
        return _lock(row) if row else None

    def lock_is_dead(self, info: LockInfo) -> bool:
        """The same liveness rule `acquire_lock` applies (for status output)."""
        row = self._read("read the apply lock", lambda c: c.execute(
            "SELECT pid_start FROM locks WHERE engine_key = ? AND run_id = ?",
            (info.engine_key, info.run_id)).fetchone())
        pid_start = row[0] if row else None
        if info.host == self.hostname and process_gone(info.pid, pid_start):
            return True
        return time.time() - info.heartbeat_at.timestamp() > self.lock_ttl

    @contextmanager
    def lock(self, engine_key: str, run_id: str, who: str | None = None,
             host: str | None = None, pid: int | None = None, *,
             force_unlock: str | None = None,
             heartbeat_every: float | None = None) -> Iterator[LockInfo]:
        """Hold the lock for the `with` block, heartbeating from a background thread.

        `heartbeat_every` defaults to a quarter of the TTL; 0 turns the thread off.
        """
        info = self.acquire_lock(engine_key, run_id, who, host, pid, force_unlock=force_unlock)
        interval = self.lock_ttl / 4 if heartbeat_every is None else heartbeat_every
        stop = threading.Event()
        beater: threading.Thread | None = None
        if interval > 0:
            def beat() -> None:
                try:
                    while not stop.wait(interval):
                        self.heartbeat(engine_key, run_id)
                except ReconcilerError:
                    pass  # lost or unwritable: the holder sees it at its next store call
                finally:
                    self._close_thread_connection()
            beater = threading.Thread(target=beat, name=f"lock-heartbeat-{run_id}", daemon=True)
            beater.start()
        try:
            yield info
        finally:
            stop.set()
            if beater is not None:
                beater.join()
            self.release_lock(engine_key, run_id)

    # -- applied state ------------------------------------------------------------------------

    def record_applied(self, engine_key: str, object_key: str, desired_fingerprint: str,
                       run_id: str) -> None:
        with self._write("record an applied object") as conn:
            conn.execute(
                "INSERT INTO applied (engine_key, object_key, fingerprint, run_id, applied_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (engine_key, object_key) DO UPDATE SET "
                "fingerprint = excluded.fingerprint, run_id = excluded.run_id, "
                "applied_at = excluded.applied_at",
                (engine_key, object_key, desired_fingerprint, run_id, time.time()))

    def applied(self, engine_key: str) -> dict[str, str]:
        rows = self._read("read applied objects", lambda c: c.execute(
            "SELECT object_key, fingerprint FROM applied WHERE engine_key = ?",
            (engine_key,)).fetchall())
        return {k: f for k, f in rows}

    # -- drift history ------------------------------------------------------------------------

    def record_drift(self, engine_key: str, items: Iterable[DriftItemRecord],
                     at: datetime | float | None = None, *,
                     scope: Iterable[str] | None = None) -> DriftChange:
        """Record the drift seen by one full observation of `engine_key` at `at`.

        Items seen before keep their first-seen time; open items not seen now are resolved.
        With `scope` (object keys), only those objects were observed: others stay as they are.
        """
        when = to_epoch(at)
        current = {(i.key, i.cls, i.message) for i in items}
        in_scope = None if scope is None else set(scope)
        new: list[DriftItemRecord] = []
        resolved: list[DriftItemRecord] = []
        with self._write("record drift") as conn:
            open_rows = conn.execute(
                "SELECT drift_id, object_key, cls, message FROM drift WHERE engine_key = ? AND "
                "resolved_at IS NULL", (engine_key,)).fetchall()
            known = {(k, c, m): d for d, k, c, m in open_rows}
            for ident in sorted(current):
                if ident in known:
                    conn.execute("UPDATE drift SET last_seen = ? WHERE drift_id = ?",
                                 (when, known[ident]))
                else:
                    conn.execute(
                        "INSERT INTO drift (engine_key, object_key, cls, message, first_seen,"
                        " last_seen) VALUES (?, ?, ?, ?, ?, ?)", (engine_key, *ident, when, when))
                    new.append(DriftItemRecord(*ident))
            for ident, drift_id in sorted(known.items()):
                if ident in current or (in_scope is not None and ident[0] not in in_scope):
                    continue
                conn.execute("UPDATE drift SET resolved_at = ? WHERE drift_id = ?",
                             (when, drift_id))
                resolved.append(DriftItemRecord(*ident))
        return DriftChange(tuple(new), tuple(resolved))

    def drift_since(self, engine_key: str) -> dict[tuple[str, str, str], datetime]:
        """Open drift items of `engine_key` -> when each was first seen."""
        rows = self._read("read drift", lambda c: c.execute(
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
        rows = self._read("read drift history", lambda c: c.execute(sql, params).fetchall())
        return [DriftRecord(k, c, m, to_datetime(f), to_datetime(l), to_datetime(r))  # type: ignore[arg-type]
                for k, c, m, f, l, r in rows]


# --------------------------------------------------------------------------------------------
# Row mapping
# --------------------------------------------------------------------------------------------

_RUN_COLS = ("run_id, kind, engine_key, spec_revision, plan_digest, who, host, started_at, "
             "finished_at, outcome, message")
_JOURNAL_COLS = ("entry_id, run_id, step_id, target, action, disruption, detail, started_at, "
                 "finished_at, outcome, message, duration")
_JOURNAL_COLS_J = ", ".join(f"j.{c.strip()}" for c in _JOURNAL_COLS.split(","))
_LOCK_COLS = "engine_key, run_id, who, host, pid, heartbeat_at, pid_start, acquired_at"


def _run(row: Sequence[Any]) -> RunRecord:
    return RunRecord(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                     to_datetime(row[7]), to_datetime(row[8]), row[9], row[10])  # type: ignore[arg-type]


def _entry(row: Sequence[Any]) -> JournalEntry:
    return JournalEntry(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                        to_datetime(row[7]), to_datetime(row[8]), row[9], row[10], row[11])  # type: ignore[arg-type]


def _lock(row: Sequence[Any]) -> LockInfo:
    return LockInfo(row[0], row[1], row[2], row[3], row[4],
                    to_datetime(row[7]), to_datetime(row[5]))  # type: ignore[arg-type]


