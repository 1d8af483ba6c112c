"""Leases: who leads what, for a while. The controller's leader election, for every backend.

A lease names a thing to lead (the controller uses `engine:<engine key>`), its holder and when it
expires. A holder keeps it by renewing it before it expires; anyone may take a lease that expired.
Unlike the apply lock, nothing here asks whether the holder's process is alive: a leader that
cannot renew in time must stop acting on its own (the controller stops before its lease runs out,
see controller/leadership.py), so an expired lease is proof enough that nobody acts on it.

`term` grows by one at each change of holder: a fencing token, so a record written under an
older term can be told apart from the current leader's.

`decide` is the policy; `SqlLeases` keeps the rows in the `leases` table, for SQLite and
PostgreSQL alike: each take is one transaction that writers of the same lease queue on (SQLite's
`BEGIN IMMEDIATE`, an advisory lock on PostgreSQL), so two contenders never both win. Expiry is
measured by the database's clock (`SqlDatabase.clock_now`: on a server, the server's, so replicas
on machines whose clocks disagree still agree on it) unless a `clock` is handed in (tests).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from reconciler.store.records import Clock, LeaseInfo, to_datetime
from reconciler.store.sql import SqlDatabase

# What `decide` tells a backend to do with the row.
INSERT, RENEW, TAKE, REFUSE = "insert", "renew", "take", "refuse"


def decide(row: LeaseInfo | None, holder: str, now: float) -> str:
    """What an `acquire_lease` by `holder` at `now` does to the current row."""
    if row is None:
        return INSERT
    if row.holder == holder:
        return RENEW
    if row.expires_at.timestamp() <= now:
        return TAKE
    return REFUSE


def check_ttl(ttl: float) -> None:
    if not ttl > 0:
        raise ValueError(f"a lease's ttl must be more than 0 seconds, not {ttl!r}")


LEASE_COLUMNS = "name, holder, term, acquired_at, renewed_at, expires_at"


def lease_info(row: Sequence[Any], taken_over_from: str | None = None) -> LeaseInfo:
    """A row selected as `LEASE_COLUMNS`."""
    return LeaseInfo(row[0], row[1], int(row[2]), to_datetime(row[3]),  # type: ignore[arg-type]
                     to_datetime(row[4]), to_datetime(row[5]),  # type: ignore[arg-type]
                     taken_over_from)


class SqlLeases:
    """The `Leases` of `interface.py` over the `leases` table."""

    def __init__(self, db: SqlDatabase, clock: Clock | None = None) -> None:
        self._db = db
        self._clock = clock

    def _now(self, conn: Any) -> float:
        return self._clock() if self._clock is not None else self._db.clock_now(conn)

    def acquire_lease(self, name: str, holder: str, ttl: float) -> LeaseInfo | None:
        check_ttl(ttl)
        with self._db.write("take a lease", serialize=f"lease:{name}") as conn:
            now = self._now(conn)
            row = conn.execute(f"SELECT {LEASE_COLUMNS} FROM leases WHERE name = ?",
                               (name,)).fetchone()
            current = lease_info(row) if row else None
            action = decide(current, holder, now)
            if action == REFUSE:
                return None
            if action == INSERT:
                conn.execute(f"INSERT INTO leases ({LEASE_COLUMNS}) VALUES (?, ?, 1, ?, ?, ?)",
                             (name, holder, now, now, now + ttl))
            elif action == RENEW:
                conn.execute("UPDATE leases SET renewed_at = ?, expires_at = ? WHERE name = ?",
                             (now, now + ttl, name))
            else:
                conn.execute("UPDATE leases SET holder = ?, term = term + 1, acquired_at = ?,"
                             " renewed_at = ?, expires_at = ? WHERE name = ?",
                             (holder, now, now, now + ttl, name))
            row = conn.execute(f"SELECT {LEASE_COLUMNS} FROM leases WHERE name = ?",
                               (name,)).fetchone()
        return lease_info(row, current.holder if action == TAKE and current else None)

    def release_lease(self, name: str, holder: str) -> bool:
        with self._db.write("release a lease", serialize=f"lease:{name}") as conn:
            return conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?",
                                (name, holder)).rowcount > 0

    def leases(self, prefix: str = "") -> list[LeaseInfo]:
        rows = self._db.read("read leases", lambda c: c.execute(
            f"SELECT {LEASE_COLUMNS} FROM leases WHERE substr(name, 1, ?) = ? ORDER BY name",
            (len(prefix), prefix)).fetchall())
        return [lease_info(r) for r in rows]

    def lease_now(self) -> float:
        return self._db.read("read the clock", self._now)
