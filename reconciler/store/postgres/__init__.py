"""The state store on PostgreSQL: the same `StateStore`, schema and migrations as SQLite, shared by
controllers on several machines (docs/store.md, docs/deploy.md).

    database.py   connections (one per thread), transactions, errors, migrating on open
    concerns.py   runs, journal, apply lock, applied fingerprints, drift history, leases
    store.py      `PostgresStore`, delegating each method to its concern

psycopg 3 is an optional dependency (`pip install gpu-reconciler[postgres]`); importing this
package without it raises a StoreError that says so.
"""
from __future__ import annotations

from reconciler.store.postgres.store import PostgresStore, is_postgres_url

__all__ = ["PostgresStore", "is_postgres_url"]
