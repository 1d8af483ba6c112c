"""Fixtures for the observe tests: a lab engine started per test (tmp state) and a connection."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from reconciler.engine.client import CountingConnection, connect
from tests.support.connections import lab_connections
from reconciler.spec.model import EngineSpec

API_PREFIX = "/ovirt-engine/api"


def lab_modules() -> tuple[Any, Any]:
    from reconciler_lab import fleet, server
    return server, fleet


def api_requests(lab: Any) -> list[Any]:
    """The lab's log of API requests (the SSO token exchange is not an API request)."""
    return [r for r in lab.request_log if r.path.startswith(API_PREFIX)]


@pytest.fixture
def start_lab(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """start_lab(fleet, **kwargs) -> a started LabServer with its own state dir; stopped after."""
    server, _ = lab_modules()
    with ExitStack() as stack:
        count = 0

        def start(fleet: Any, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            lab = server.LabServer(fleet, tmp_path / f"lab{count}", **kwargs)
            lab.start()
            stack.callback(lab.stop)
            return lab

        yield start


@pytest.fixture
def fleets() -> Any:
    return lab_modules()[1]


@pytest.fixture
def lab_connect() -> Iterator[Callable[..., CountingConnection]]:
    """lab_connect(lab) -> a CA-verified connection to that lab; closed after the test."""
    with lab_connections() as make:
        yield make


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """`main()` points structlog at the captured stderr of its test; undo that afterwards."""
    yield
    import structlog
    structlog.reset_defaults()
