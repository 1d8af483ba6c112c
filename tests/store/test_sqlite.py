"""The SQLite backend's own promises: the released schema, migrations, the file, connections.

What every backend must do is tested against `StateStore` in the other files; these tests look
at the file itself (sqlite_master, PRAGMAs, locking) or at SQLite-only failure modes.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from reconciler.errors import ReconcilerError
from reconciler.store import SCHEMA_VERSION, Store, StoreError
from tests.store.backends import FakeClock

# The schema as the released code creates it, read back from sqlite_master.
GOLDEN_SCHEMA = Path(__file__).parent / "golden" / f"sqlite-schema-v{SCHEMA_VERSION}.sql"
RELEASED_V1 = Path(__file__).parent / "golden" / "sqlite-schema-v1.sql"


def _schema_text(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                            "ORDER BY rowid").fetchall()
    finally:
        conn.close()
    return "\n".join(f"-- {kind} {name}\n{sql};\n" for kind, name, sql in rows)


def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.touch()
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        run_id = s.start_run("plan", "lab:x")
        assert s.run(run_id) is not None
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "journal", "locks", "applied", "drift"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_new_file_gets_the_released_schema_verbatim(tmp_path: Path) -> None:
    # SQLite keeps the text of every CREATE statement: a released migration must still render
    # byte for byte as it did, so files made by different versions hold the same schema.
    path = tmp_path / "state.db"
    Store(path).close()
    assert _schema_text(path) == GOLDEN_SCHEMA.read_text()


def test_a_file_made_by_the_first_released_schema_is_migrated_with_its_data(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in RELEASED_V1.read_text().split(";\n"):
        if statement.strip() and "sqlite_sequence" not in statement:   # SQLite makes that one
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO runs (run_id, kind, engine_key, spec_revision, plan_digest, who,"
                 " host, pid, started_at) VALUES ('r-old', 'apply', 'lab:x', 'rev', NULL, 'ops',"
                 " 'h1', 42, 1700000000.5)")
    conn.execute("INSERT INTO journal (run_id, step_id, target, action, disruption, detail,"
                 " started_at) VALUES ('r-old', 's1', 'host:a', 'host-cycle', 'host-reboot',"
                 " '{\"phase\": \"install\"}', 1700000001.0)")
    conn.execute("INSERT INTO locks VALUES ('lab:x', 'r-old', 'ops', 'far-host', 4242, NULL,"
                 " 1700000000.5, 1700000002.0)")
    conn.execute("INSERT INTO applied VALUES ('lab:x', 'host:a', 'fp-1', 'r-old', 1700000003.0)")
    conn.execute("INSERT INTO drift (engine_key, object_key, cls, message, first_seen, last_seen)"
                 " VALUES ('lab:x', 'host:a', 'modprobe', 'nouveau loaded', 1700000000.0,"
                 " 1700000004.0)")
    conn.close()

    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION
        run = s.run("r-old")
        assert run is not None and (run.kind, run.who, run.outcome) == ("apply", "ops", None)
        assert run.started_at.timestamp() == 1700000000.5
        (step,) = s.unfinished_steps("lab:x")
        assert (step.run_id, step.detail) == ("r-old", {"phase": "install"})
        lock = s.lock_info("lab:x")
        assert lock is not None
        assert (lock.run_id, lock.host, lock.pid) == ("r-old", "far-host", 4242)
        assert s.applied("lab:x") == {"host:a": "fp-1"}
        assert list(s.drift_since("lab:x")) == [("host:a", "modprobe", "nouveau loaded")]


def test_creates_missing_folders_and_reopens_idempotently(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    Store(path).close()
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this version"):
        Store(path)


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite at all, just some text " * 100)
    with pytest.raises(ReconcilerError) as err:
        Store(path)
    assert isinstance(err.value, StoreError)
    assert str(path) in str(err.value) and "not a valid state database" in str(err.value)


def test_database_locked_too_long_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with Store(path, busy_timeout_ms=100) as s, pytest.raises(StoreError) as err:
            s.start_run("apply", "lab:x")
        assert "locked" in str(err.value) and "another process" in str(err.value)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create the folder"):
        Store(blocker / "state.db")


def test_the_heartbeat_thread_does_not_leak_connections(db_path: Path) -> None:
    clock = FakeClock()
    with Store(db_path, clock=clock) as store:
        store.start_run("plan", "lab:small")        # this thread's connection
        for i in range(5):
            with store.lock("lab:small", f"r-{i}", heartbeat_every=0.005) as info:
                # Let the thread beat at least once, so it has opened a connection to close.
                clock.advance(1)
                deadline = time.monotonic() + 30    # only stops a hung test
                while (held := store.lock_info("lab:small")) is not None \
                        and held.heartbeat_at == info.heartbeat_at:
                    assert time.monotonic() < deadline, "the heartbeat thread never beat"
                    time.sleep(0.005)
        assert store._db.open_connections == 1
