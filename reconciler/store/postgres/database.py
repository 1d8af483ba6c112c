"""One PostgreSQL database: connections, short transactions, and errors that say what to do.

- One connection per thread (and a fresh one after `fork`), in autocommit mode: every write is
  one explicit transaction (`write`), every read one statement (`read`).
- What SQLite gets from `BEGIN IMMEDIATE` (writers queue, a check-then-write cannot race) comes
  here from transaction-scoped advisory locks on a key the writer names (`write(..., serialize=)`):
  two processes taking the same engine's apply lock queue on it, and the first one's row is
  committed before the second one reads.
- A connection the server dropped (restart, failover of the database) is replaced at the next
  call; the statement that found it broken fails with a StoreError and the caller's retry works.
- Errors name the database without its password and say what to do.

The schema version lives in a one-row table, `schema_version`, created before anything else.
Opening applies the missing steps of `schema.migrations(POSTGRES)` in one transaction (DDL is
transactional in PostgreSQL) under an advisory lock, so replicas starting together migrate once.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from reconciler.store.interface import StoreError
from reconciler.store.schema import POSTGRES, SCHEMA_VERSION, migrations

try:
    import psycopg
    from psycopg import conninfo
except ImportError:  # pragma: no cover - exercised only without the extra installed
    psycopg = None  # type: ignore[assignment]

T = TypeVar("T")
CONNECT_TIMEOUT = 10
# Advisory lock keys are 64-bit; this one (an arbitrary constant) guards migrations.
_MIGRATE_KEY = 0x6770_7572_6563_6F6E


def display_name(url: str) -> str:
    """`url` without its password, for messages and logs."""
    if psycopg is None:
        return url.split("@")[-1]
    try:
        parts = conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql://(unparsable URL)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


class _Qmark:
    """A connection that takes the `?` placeholders of the store's concerns (written once for
    SQLite and PostgreSQL) and, like sqlite3's, `executemany`; no statement of the store has a `?`
    of its own."""

    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self._conn.execute(sql.replace("?", "%s"), args)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(sql.replace("?", "%s"), rows)

    def __getattr__(self, name: str) -> Any:       # cursor(), ... as psycopg has them
        return getattr(self._conn, name)


class PostgresDatabase:
    """The database at `url` (a libpq URL or key=value string), migrated on open."""

    # How PostgreSQL spells what the backends do differently (sql.SqlDatabase).
    insert_order = "started_seq"      # a server database keeps no insertion order of its own
    rest_after = "OFFSET ?"
    differs_from = "IS DISTINCT FROM"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, *, statement_timeout_ms: int = 30_000) -> None:
        if psycopg is None:
            raise StoreError("--state postgresql://... needs psycopg 3: pip install "
                             "'gpu-reconciler[postgres]' (or 'psycopg[binary]')")
        self.url = url
        self.name = display_name(url)
        self.statement_timeout_ms = statement_timeout_ms
        self._local = threading.local()
        self._conns: list[Any] = []
        self._guard = threading.Lock()
        self._migrate()

    # -- connections ------------------------------------------------------------------------

    def connect(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid() \
                and not conn.closed and not conn.broken:
            return conn
        if conn is not None:
            self._forget(conn)
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name="gpu-reconciler",
                                   options=f"-c statement_timeout={int(self.statement_timeout_ms)}")
        except psycopg.Error as exc:
            raise self.error(exc, "connect") from exc
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._guard:
            self._conns.append(conn)
        return conn

    def _forget(self, conn: Any) -> None:
        with self._guard:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except psycopg.Error:
            pass
        self._local.conn = None

    @property
    def open_connections(self) -> int:
        with self._guard:
            return len(self._conns)

    def close_thread_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._forget(conn)

    def close(self) -> None:
        with self._guard:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except psycopg.Error:
                pass
        self._local = threading.local()

    # -- statements -------------------------------------------------------------------------

    def error(self, exc: BaseException, doing: str) -> StoreError:
        text = " ".join(str(exc).split())
        sqlstate = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, psycopg.OperationalError) and not sqlstate:
            hint = "is the server running and reachable, and are the URL's credentials right?"
        elif sqlstate.startswith("28"):
            hint = "check the user and password (a password file: PGPASSFILE or ~/.pgpass)"
        elif sqlstate == "3D000":
            hint = "create the database first (createdb), or fix the URL's database name"
        elif sqlstate == "42501":
            hint = "the user needs CREATE on the database's schema and rights on its tables"
        elif sqlstate == "57014":
            hint = f"a statement took longer than {self.statement_timeout_ms / 1000:g}s"
        else:
            hint = "see the PostgreSQL message"
        return StoreError(f"state database {self.name}: cannot {doing}: {text}; {hint}")

    @contextmanager
    def write(self, doing: str, serialize: str | None = None) -> Iterator[Any]:
        """One transaction, committed when the block ends and rolled back when it raises.
        `serialize` names what concurrent writers must queue on (e.g. "lock:<engine>")."""
        conn = self.connect()
        try:
            with conn.transaction():
                if serialize is not None:
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                                 (serialize,))
                yield _Qmark(conn)
        except psycopg.Error as exc:
            raise self.error(exc, doing) from exc

    def read(self, doing: str, fn: Callable[[Any], T]) -> T:
        try:
            return fn(_Qmark(self.connect()))
        except psycopg.Error as exc:
            raise self.error(exc, doing) from exc

    def insert_id(self, conn: Any, sql: str, args: Sequence[Any], column: str) -> int:
        return int(conn.execute(f"{sql} RETURNING {column}", args).fetchone()[0])

    def is_unique_violation(self, exc: BaseException) -> bool:
        return is_unique_violation(exc)

    def is_foreign_key_violation(self, exc: BaseException) -> bool:
        return is_foreign_key_violation(exc)

    def clock_now(self, conn: Any) -> float:
        """The server's clock: replicas on machines whose clocks disagree agree on it."""
        return float(conn.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int:
        def version(c: Any) -> int:
            row = c.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0]) if row else 0
        return self.read("read the schema version", version)

    def _migrate(self) -> None:
        with self.write("migrate the schema") as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_KEY,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"state database {self.name} has schema version {version}, newer than this "
                    f"version of gpu-reconciler understands ({SCHEMA_VERSION}); upgrade it")
            if version == SCHEMA_VERSION:
                return
            for step in migrations(POSTGRES)[version:]:
                for statement in step:
                    conn.execute(statement)
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)",
                             (SCHEMA_VERSION,))
            else:
                conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION,))


def is_unique_violation(exc: BaseException) -> bool:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return getattr(cause, "sqlstate", None) == "23505"


def is_foreign_key_violation(exc: BaseException) -> bool:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    return getattr(cause, "sqlstate", None) == "23503"
