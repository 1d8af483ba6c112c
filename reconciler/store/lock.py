"""The apply lock: its take-over policy and its table, for SQLite and PostgreSQL alike.

One apply per engine. A lock whose holder is alive is never taken. A holder is *dead* when its
heartbeat is older than the TTL, or when it ran on this host and its process is provably gone (no
such pid, a zombie, or a different process now owns the pid; see liveness.py). A lock whose holder
is provably gone on this host is taken over automatically: nothing can be racing us, and a
SIGKILLed apply must not need manual surgery. Any other dead lock (holder on another host, or a
hung holder on this one) needs `force_unlock=<its run id>`: across hosts nothing can be proved,
so a stale heartbeat only *allows* a take-over the operator names, never a guess.

The policy (`check_take_over`, `holder_is_dead`) and the heartbeat thread (`hold`) are plain
functions; `SqlApplyLock` only stores the row, in a transaction the writers of one engine's lock
queue on (SQLite's `BEGIN IMMEDIATE`, an advisory lock on PostgreSQL), so two racing processes
cannot both win.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any

from reconciler.errors import LockedError, ReconcilerError
from reconciler.store.interface import ApplyLock
from reconciler.store.liveness import process_gone, process_start
from reconciler.store.records import Clock, LockInfo, default_who, to_datetime
from reconciler.store.sql import SqlDatabase

DEFAULT_LOCK_TTL = 300.0        # seconds without a heartbeat before a holder counts as dead


# --------------------------------------------------------------------------------------------
# The policy (any backend)
# --------------------------------------------------------------------------------------------

def check_take_over(held: LockInfo, pid_start: int | None, now: float, force_unlock: str | None,
                    *, ttl: float, hostname: str) -> None:
    """Return when another run may replace `held` at `now`; otherwise raise LockedError saying
    who holds the lock and exactly how to proceed."""
    gone_here = held.host == hostname and process_gone(held.pid, pid_start)
    stale = now - held.heartbeat_at.timestamp() > ttl
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
            f"than {ttl:g}s so it looks dead, but it cannot be proved from here. "
            f"Make sure it is not running, then take over with --force-unlock {held.run_id}")
    if force_unlock != held.run_id:
        raise LockedError(
            f"--force-unlock {force_unlock} does not match the holder of the apply lock of "
            f"{held.engine_key}: {holder}; use --force-unlock {held.run_id}")


def holder_is_dead(info: LockInfo, pid_start: int | None, now: float, *, ttl: float,
                   hostname: str) -> bool:
    """The liveness rule `check_take_over` applies, as a yes/no for status output."""
    if info.host == hostname and process_gone(info.pid, pid_start):
        return True
    return now - info.heartbeat_at.timestamp() > ttl


@contextmanager
def hold(lock: ApplyLock, engine_key: str, run_id: str, who: str | None, host: str | None,
         pid: int | None, *, force_unlock: str | None, heartbeat_every: float,
         thread_done: Callable[[], None]) -> Iterator[LockInfo]:
    """Acquire, heartbeat every `heartbeat_every` seconds from a background thread (0: none) and
    always release. `thread_done` runs as the heartbeat thread ends, to free what it opened."""
    info = lock.acquire_lock(engine_key, run_id, who, host, pid, force_unlock=force_unlock)
    stop = threading.Event()
    beater: threading.Thread | None = None
    if heartbeat_every > 0:
        def beat() -> None:
            try:
                while not stop.wait(heartbeat_every):
                    lock.heartbeat(engine_key, run_id)
            except ReconcilerError:
                pass  # lost or unwritable: the holder sees it at its next store call
            finally:
                thread_done()
        beater = threading.Thread(target=beat, name=f"lock-heartbeat-{run_id}", daemon=True)
        beater.start()
    try:
        yield info
    finally:
        stop.set()
        if beater is not None:
            beater.join()
        lock.release_lock(engine_key, run_id)


def _fmt(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


# --------------------------------------------------------------------------------------------
# The table (sql.py)
# --------------------------------------------------------------------------------------------

# pid_start is stored but not handed out: it only serves to tell a reused pid apart.
_COLUMNS = "engine_key, run_id, who, host, pid, heartbeat_at, pid_start, acquired_at"


class SqlApplyLock:
    """The `ApplyLock` of `interface.py` over the `locks` table, one row per held engine.

    `hostname` decides which holders are "on this host", whose processes can be checked;
    `clock` is what heartbeat ages are measured with.
    """

    def __init__(self, db: SqlDatabase, hostname: str, ttl: float = DEFAULT_LOCK_TTL,
                 clock: Clock = time.time) -> None:
        self._db = db
        self._hostname = hostname
        self._ttl = ttl
        self._clock = clock

    def acquire_lock(self, engine_key: str, run_id: str, who: str | None = None,
                     host: str | None = None, pid: int | None = None, *,
                     force_unlock: str | None = None) -> LockInfo:
        """Take the apply lock of `engine_key` for `run_id`, or raise LockedError saying why not."""
        who = who or default_who()
        host = host or self._hostname
        pid = os.getpid() if pid is None else pid
        pid_start = process_start(pid) if host == self._hostname else None
        with self._db.write("take the apply lock", serialize=f"lock:{engine_key}") as conn:
            now = self._clock()
            row = conn.execute(f"SELECT {_COLUMNS} FROM locks WHERE engine_key = ?",
                               (engine_key,)).fetchone()
            taken_over: str | None = None
            if row is not None:
                held = _lock_info(row)
                if held.run_id != run_id:
                    check_take_over(held, row[6], now, force_unlock,
                                    ttl=self._ttl, hostname=self._hostname)
                    taken_over = held.run_id
                else:
                    # Re-entrant for the same run: refresh the heartbeat, keep the holder.
                    conn.execute("UPDATE locks SET heartbeat_at = ? WHERE engine_key = ?",
                                 (now, engine_key))
                    return LockInfo(engine_key, run_id, held.who, held.host, held.pid,
                                    held.acquired_at, to_datetime(now) or held.heartbeat_at)
            conn.execute(
                "INSERT INTO locks (engine_key, run_id, who, host, pid, pid_start, acquired_at,"
                " heartbeat_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (engine_key)"
                " DO UPDATE SET run_id = excluded.run_id, who = excluded.who, host = "
                "excluded.host, pid = excluded.pid, pid_start = excluded.pid_start, acquired_at"
                " = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at",
                (engine_key, run_id, who, host, pid, pid_start, now, now))
        stamp = to_datetime(now)
        assert stamp is not None
        return LockInfo(engine_key, run_id, who, host, pid, stamp, stamp, taken_over)

    def heartbeat(self, engine_key: str, run_id: str) -> None:
        """Refresh the holder's heartbeat; LockedError when the lock is no longer ours."""
        with self._db.write("refresh the lock heartbeat",
                            serialize=f"lock:{engine_key}") as conn:
            cur = conn.execute("UPDATE locks SET heartbeat_at = ? WHERE engine_key = ? AND "
                               "run_id = ?", (self._clock(), engine_key, run_id))
            if cur.rowcount == 0:
                row = conn.execute("SELECT run_id, who, host FROM locks WHERE engine_key = ?",
                                   (engine_key,)).fetchone()
                now_held = (f"it is now held by run {row[0]} ({row[1]} on {row[2]})" if row
                            else "nobody holds it now")
                raise LockedError(f"run {run_id} no longer holds the apply lock of "
                                  f"{engine_key}: {now_held}")

    def release_lock(self, engine_key: str, run_id: str) -> bool:
        """Release the lock if `run_id` holds it; False when it did not (nothing changed)."""
        with self._db.write("release the apply lock", serialize=f"lock:{engine_key}") as conn:
            cur = conn.execute("DELETE FROM locks WHERE engine_key = ? AND run_id = ?",
                               (engine_key, run_id))
            return cur.rowcount > 0

    def lock_info(self, engine_key: str) -> LockInfo | None:
        row = self._db.read("read the apply lock", lambda c: c.execute(
            f"SELECT {_COLUMNS} FROM locks WHERE engine_key = ?", (engine_key,)).fetchone())
        return _lock_info(row) if row else None

    def lock_is_dead(self, info: LockInfo) -> bool:
        """The same liveness rule `acquire_lock` applies (for status output)."""
        row = self._db.read("read the apply lock", lambda c: c.execute(
            "SELECT pid_start FROM locks WHERE engine_key = ? AND run_id = ?",
            (info.engine_key, info.run_id)).fetchone())
        pid_start = row[0] if row else None
        return holder_is_dead(info, pid_start, self._clock(), ttl=self._ttl,
                              hostname=self._hostname)

    def lock(self, engine_key: str, run_id: str, who: str | None = None,
             host: str | None = None, pid: int | None = None, *,
             force_unlock: str | None = None,
             heartbeat_every: float | None = None) -> AbstractContextManager[LockInfo]:
        """Hold the lock for the `with` block, heartbeating from a background thread.

        `heartbeat_every` defaults to a quarter of the TTL; 0 turns the thread off.
        """
        every = self._ttl / 4 if heartbeat_every is None else heartbeat_every
        return hold(self, engine_key, run_id, who, host, pid, force_unlock=force_unlock,
                    heartbeat_every=every, thread_done=self._db.close_thread_connection)


def _lock_info(row: Sequence[Any]) -> LockInfo:
    """A row selected as `_COLUMNS`."""
    return LockInfo(row[0], row[1], row[2], row[3], int(row[4]),
                    to_datetime(row[7]), to_datetime(row[5]))  # type: ignore[arg-type]
