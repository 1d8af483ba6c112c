"""Connections to a lab engine for tests: the product's own connection (it counts requests and
keeps the ids found by name), its TLS verified against the lab's CA, closed after the test."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from reconciler.engine.client import CountingConnection, connect
from reconciler.spec.model import EngineSpec


@contextmanager
def lab_connections() -> Iterator[Callable[..., CountingConnection]]:
    """`make(lab, **overrides)` opens one (overrides go to `connect`, e.g. another CA file);
    every connection made is closed when the block ends."""
    opened: list[CountingConnection] = []

    def make(lab: Any, **overrides: Any) -> CountingConnection:
        spec = EngineSpec(url=lab.url, username=lab.username, ca_file=Path(lab.ca_file))
        conn = connect(spec, **{"password": lab.password, **overrides})
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        try:
            conn.close(logout=False)
        except Exception:  # noqa: BLE001 - closing is best effort in teardown
            pass


__all__ = ["lab_connections"]
