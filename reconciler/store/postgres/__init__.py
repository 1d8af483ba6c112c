"""The state store on PostgreSQL: the same `StateStore`, schema and migrations as SQLite, shared by
controllers on several machines (docs/store.md, docs/deploy.md).

    database.py   connections (one per thread; they take `?` placeholders too), transactions,
                  errors, migrating on open
    concerns.py   the drift history in PostgreSQL's SQL (the other concerns are written once for
                  both backends: runs.py, journal.py, lock.py, applied.py, lease.py, via sql.py)
    store.py      `PostgresStore`, delegating each method to its concern

psycopg 3 is an optional dependency (`pip install gpu-reconciler[postgres]`); importing this
package without it raises a StoreError that says so.
"""
from __future__ import annotations

from reconciler.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
