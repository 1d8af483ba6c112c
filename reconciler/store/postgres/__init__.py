"""The state store on PostgreSQL: the same `StateStore`, schema and migrations as SQLite, shared by
controllers on several machines (docs/store.md, docs/deploy.md).

    database.py   connections (one per thread; they take `?` placeholders too), transactions,
                  errors, migrating on open
    store.py      `PostgresStore`: the concerns SQLite uses too (runs.py, journal.py, lock.py,
                  applied.py, drift.py, lease.py, written for both through sql.py)

psycopg 3 is an optional dependency (`pip install gpu-reconciler[postgres]`); importing this
package without it raises a StoreError that says so.
"""
from __future__ import annotations

from reconciler.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
