"""The lab engine's simulated hosts, reached as local root trees."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.access.transport import LocalRootTransport


class LabTransport(LocalRootTransport):
    """A lab engine's simulated host, e.g. `LabTransport(lab.host_root, "gpu-01")`."""

    def __init__(self, root_for: Callable[[str], Path], host: str) -> None:
        self.host = host
        super().__init__(root_for(host))

    def describe(self) -> str:
        return f"lab host {self.host}"
