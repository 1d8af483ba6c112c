"""A lab per test module (TLS with its own CA), for public clients run unchanged against it."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from reconciler_lab.fleet import LabFleet, load_fleet
from reconciler_lab.server import LabServer

# Fast enough for a few minutes in all, slow enough that a client's first poll after an action
# still sees the transitional status, as it would on an engine (install 0.4 s, reboot 0.8 s).
TIME_SCALE = 0.02


def start_lab(fleet: LabFleet | str, state: Path) -> LabServer:
    return LabServer(fleet if isinstance(fleet, LabFleet) else load_fleet(fleet), state,
                     time_scale=TIME_SCALE).start()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    server = start_lab("demo", tmp_path_factory.mktemp("lab"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def connection(lab: LabServer) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                          ca_file=str(lab.ca_file))
    try:
        yield conn
    finally:
        conn.close()
