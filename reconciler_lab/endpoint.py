"""The embedded lab as an engine endpoint: what `reconciler.commands` plugs in for a spec whose
engine is `lab: {fleet: ...}`.

The product sees only the `EngineEndpoint` protocol: a connection to the lab's HTTPS API, the
lab's simulated hosts as transports, and the production timing policy scaled by the lab's time
scale (the same number of attempts; waits shorter by the factor its clock runs faster).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler.access.endpoint import authenticated
from reconciler.access.transport import Transport
from reconciler.engine.client import CountingConnection, connect
from reconciler.engine.retry import DEFAULT_TIMING, Timing
from reconciler.spec.model import EngineSpec
from reconciler_lab.embedded import EmbeddedLab, embedded_lab
from reconciler_lab.transport import LabTransport


@dataclass(frozen=True)
class LabEndpoint:
    """An embedded lab engine: started for this process, or the one another process serves on
    the same state folder (a controller's, `lab serve`)."""

    engine: EngineSpec
    lab: EmbeddedLab

    @property
    def key(self) -> str:
        return f"lab:{self.engine.lab_fleet}"

    @property
    def timing(self) -> Timing:
        return DEFAULT_TIMING.scaled(self.lab.time_scale)

    def connect(self, *, connections: int = 4) -> CountingConnection:
        lab = self.lab
        return authenticated(connect(self.engine, url=lab.url, ca_file=lab.ca_file,
                                     username=lab.username, password=lab.password,
                                     connections=connections), self.timing)

    def transports(self, names: Sequence[str],
                   addresses: Mapping[str, str]) -> dict[str, Transport]:
        assert self.lab.host_root is not None
        return {name: LabTransport(self.lab.host_root, name) for name in names}


@contextmanager
def open_lab_endpoint(engine: EngineSpec, state_root: Path | None = None) -> Iterator[LabEndpoint]:
    """Start the embedded lab for `engine` (state in `state_root`, else the spec's
    `engine.lab.state`, else the lab's default) and yield its endpoint; stop it after."""
    root = state_root or engine.lab_state
    with embedded_lab(engine, Path(root) if root is not None else None) as lab:
        yield LabEndpoint(engine, lab)
