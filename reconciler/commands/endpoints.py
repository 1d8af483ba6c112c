"""The composition root's one choice: which engine endpoint a spec is reached through.

A spec whose engine is `lab: {fleet: ...}` gets the embedded lab (the `reconciler_lab` package,
imported only here and by the lab's own commands); every other spec gets the real engine at its
URL. Everything below `commands/` receives the endpoint and never asks which one it is.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from reconciler.access.endpoint import EngineEndpoint, open_real_endpoint
from reconciler.observe.session import FleetSession, open_fleet
from reconciler.spec.model import DesiredState


def open_endpoint(desired: DesiredState, *,
                  state_root: Path | None = None) -> AbstractContextManager[EngineEndpoint]:
    """The endpoint for the spec's engine; `state_root` places an embedded lab's state."""
    if desired.engine.is_lab:
        from reconciler_lab.endpoint import open_lab_endpoint
        return open_lab_endpoint(desired.engine, state_root)
    return open_real_endpoint(desired)


@contextmanager
def fleet_session(desired: DesiredState, *,
                  state_root: Path | None = None) -> Iterator[FleetSession]:
    """Open the spec's endpoint and a fleet session on it, for one command."""
    with open_endpoint(desired, state_root=state_root) as endpoint, \
            open_fleet(desired, endpoint) as fleet:
        yield fleet


__all__ = ["fleet_session", "open_endpoint"]
