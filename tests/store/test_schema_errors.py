"""Schema migrations and clear errors for files that are not (or not yet) usable."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from reconciler.errors import ReconcilerError
from reconciler.store import SCHEMA_VERSION, Store, StoreError


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


def test_each_thread_uses_its_own_connection(tmp_path: Path) -> None:
    with Store(tmp_path / "state.db") as s:
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(20):
                    run_id = s.start_run("plan", f"lab:{n}")
                    s.finish_run(run_id, "ok", str(i))
            except BaseException as exc:  # noqa: BLE001 - surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(s.runs(1000)) == 80
