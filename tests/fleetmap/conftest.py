"""Facts for the fleet map tests: probes of the fixture roots beside engine facts made to match."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.access.transport import LocalRootTransport
from reconciler.model.facts import ProbeFacts
from reconciler.observe.probe import probe_host

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"


@pytest.fixture(scope="session")
def probes() -> dict[str, ProbeFacts]:
    """Each fixture root probed once, named after its folder."""
    out = {}
    for root in sorted(p for p in HOSTS.iterdir() if p.is_dir()):
        out[root.name] = probe_host(LocalRootTransport(root), root.name, timeout=30)
    return out
