"""What the store's concerns need of their database (runs.py, journal.py, lock.py, applied.py,
drift.py, lease.py: each written once for SQLite and PostgreSQL).

They use `?` placeholders and statements both accept, and a connection's `execute` and
`executemany`; each database says how it spells the few things the two do differently, and a
PostgreSQL connection takes the `?` too (postgres/database.py).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class SqlDatabase(Protocol):
    name: str
    insert_order: str      # the runs column that orders runs started at the same time
    rest_after: str        # "every row after the first ?" (SQLite needs a LIMIT before OFFSET)
    differs_from: str      # the null-safe "is not equal to" operator
    for_update: str        # what locks a row read for an update in the same transaction

    def write(self, doing: str, serialize: str | None = None) -> AbstractContextManager[Any]: ...

    def read(self, doing: str, fn: Callable[[Any], T]) -> T: ...

    def insert_id(self, conn: Any, sql: str, args: Sequence[Any], column: str) -> int:
        """Run an INSERT and return the key the database gave the new row's `column`."""
        ...

    def is_unique_violation(self, exc: BaseException) -> bool: ...

    def is_foreign_key_violation(self, exc: BaseException) -> bool: ...

    def close_thread_connection(self) -> None: ...

    def clock_now(self, conn: Any) -> float:
        """Epoch seconds by the clock every user of the database shares."""
        ...
