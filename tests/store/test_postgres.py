"""What only the PostgreSQL store promises: replicas starting together migrate once, a newer
schema is refused, a server restart costs one failed call (then it reconnects), and errors name
the database without its password."""
from __future__ import annotations

import threading

import psycopg
import pytest

from reconciler.store import SCHEMA_VERSION, StoreError, open_store
from reconciler.store.postgres import PostgresStore
from reconciler.store.postgres.database import display_name

pytestmark = pytest.mark.postgres


def test_replicas_opening_a_new_database_together_migrate_it_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_store(postgres_url).close()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [
            (SCHEMA_VERSION,)]
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "journal", "locks", "applied", "drift", "leases"} <= tables


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    open_store(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer than this version"):
        open_store(postgres_url)


def test_open_store_picks_the_backend_by_location(postgres_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with open_store(postgres_url) as s:
        assert isinstance(s, PostgresStore)
    with open_store(tmp_path / "state.db") as s:
        assert not isinstance(s, PostgresStore)


def test_a_server_restart_costs_one_call(postgres_server, postgres_url: str) -> None:  # type: ignore[no-untyped-def]
    store = open_store(postgres_url)
    try:
        run_id = store.start_run("plan", "lab:x")
        postgres_server.restart()
        try:
            store.run(run_id)
        except StoreError:
            pass                       # the call that found the connection dropped
        record = store.run(run_id)
        assert record is not None and record.kind == "plan"
    finally:
        store.close()


def test_an_unreachable_server_is_a_clear_error_without_the_password() -> None:
    url = "postgresql://ops:s3cret@127.0.0.1:1/state"
    with pytest.raises(StoreError) as err:
        open_store(url)
    text = str(err.value)
    assert "s3cret" not in text
    assert "postgresql://ops@127.0.0.1:1/state" in text
    assert "reachable" in text
    assert display_name(url) == "postgresql://ops@127.0.0.1:1/state"


def test_leases_are_measured_by_the_server_clock(postgres_url: str) -> None:
    with open_store(postgres_url) as s:
        with psycopg.connect(postgres_url) as conn:
            server_now = float(conn.execute(
                "SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
        assert abs(s.lease_now() - server_now) < 5
        lease = s.acquire_lease("engine:a", "ctl-1", ttl=10)
        assert lease is not None
        assert abs(lease.expires_at.timestamp() - (server_now + 10)) < 5
