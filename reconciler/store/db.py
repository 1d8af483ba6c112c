"""One SQLite state file: connections, short write transactions and errors that say what to do.

Every process that works on a fleet (the CLI, a controller, a second controller) shares the file:
- WAL mode, so readers never wait for the writer;
- every write is one short `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so two
  writers queue on the busy timeout instead of failing while upgrading a read lock;
- one connection per thread, and a fresh one after `fork`: an sqlite3 connection must cross
  neither;
- any sqlite3 error becomes a `StoreError` naming the file and the likely fix, because the
  operator reading it cannot do anything with "database is locked" alone.

The schema version lives in `PRAGMA user_version`. Opening applies the missing steps of
`schema.migrations(SQLITE)` in one transaction and refuses a file newer than the code.

The concern modules (runs.py, journal.py, lock.py, applied.py, drift.py) run their statements
through `read` and `write` only; none of them opens or configures a connection.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from reconciler.store.interface import StoreError
from reconciler.store.schema import SCHEMA_VERSION, SQLITE, migrations

def default_state_path(environ: dict[str, str] | None = None) -> Path:
    """Where the store lives when `--state` is not given, never relative to the working folder
    (two applies started from two folders must share one journal and one lock): systemd's
    `$STATE_DIRECTORY` for a service, else `$XDG_STATE_HOME/gpu-reconciler`, else
    `~/.local/state/gpu-reconciler` (the XDG default)."""
    env = os.environ if environ is None else environ
    service = env.get("STATE_DIRECTORY", "").split(":")[0]
    if service:
        return Path(service) / "state.db"
    xdg = env.get("XDG_STATE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "gpu-reconciler" / "state.db"


DEFAULT_PATH = default_state_path()
BUSY_TIMEOUT_MS = 10_000

T = TypeVar("T")


class SqliteDatabase:
    """The state file at `path`, created with its folder when missing and migrated on open."""

    # How SQLite spells what the backends do differently (sql.SqlDatabase). Under BEGIN
    # IMMEDIATE every writer queues on the whole file, so `write` needs no named serialization.
    insert_order = "rowid"
    rest_after = "LIMIT -1 OFFSET ?"
    differs_from = "IS NOT"
    for_update = ""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *,
                 busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_guard = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder of the state database {self.path}: "
                             f"{exc.strerror or exc}") from exc
        self._migrate()

    # -- connections ------------------------------------------------------------------------

    def connect(self) -> sqlite3.Connection:
        """The calling thread's connection, opened on first use."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A connection must never cross a fork: the child opens its own.
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise self.error(exc, "open") from exc
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._conns_guard:
            self._conns.append(conn)
        return conn

    @property
    def open_connections(self) -> int:
        """How many connections are open: one per thread that used the file and has not closed
        its own (a thread that ends must, or the file stays open until `close`)."""
        with self._conns_guard:
            return len(self._conns)

    def close_thread_connection(self) -> None:
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

    # -- statements -------------------------------------------------------------------------

    def error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        """`exc` as a StoreError that names the file and what to do about it."""
        text = str(exc)
        if "locked" in text or "busy" in text:
            hint = (f"another process held it for more than {self.busy_timeout_ms / 1000:g}s; "
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
    def write(self, doing: str, serialize: str | None = None) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back when it
        raises. `doing` completes "cannot ..." in the error message; `serialize` is for servers
        (writers here already queue on the whole file)."""
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self.error(exc, doing) from exc
        try:
            yield conn
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self.error(exc, doing) from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self.error(exc, doing) from exc

    def read(self, doing: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn` on this thread's connection, outside any transaction (WAL: never waits)."""
        try:
            return fn(self.connect())
        except sqlite3.Error as exc:
            raise self.error(exc, doing) from exc

    def insert_id(self, conn: sqlite3.Connection, sql: str, args: Sequence[Any],
                  column: str) -> int:
        return int(conn.execute(sql, args).lastrowid or 0)

    def is_unique_violation(self, exc: BaseException) -> bool:
        return "UNIQUE" in str(exc)

    def is_foreign_key_violation(self, exc: BaseException) -> bool:
        return "FOREIGN KEY" in str(exc)

    def clock_now(self, conn: sqlite3.Connection) -> float:
        """The file is on one machine: its users share this machine's clock."""
        return time.time()

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int:
        return self.read("read the schema version",
                         lambda c: int(c.execute("PRAGMA user_version").fetchone()[0]))

    def _migrate(self) -> None:
        # Read first: an up-to-date file needs no write lock, so opening never waits on writers.
        if self.schema_version() == SCHEMA_VERSION:
            return
        with self.write("migrate the schema") as conn:
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
