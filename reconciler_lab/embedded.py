"""Run the lab engine in-process for specs whose engine is `lab: {fleet: ...}`.

State lives under `<state_root>/<fleet>/` (or the spec's `engine.lab.state`), so `plan`, `apply`
and `plan` again, each a separate CLI run, see one continuing fleet. One process at a time: a
second one on the same state is refused (`statelock`), and so is a state made from another
fleet (`fleetmark`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler_lab.fleetmark import check_fleet_mark
from reconciler_lab.server import LabError, LabServer
from reconciler_lab.statelock import state_lock
from reconciler.spec.model import EngineSpec

DEFAULT_STATE_ROOT = Path(".reconciler/lab")


@dataclass(frozen=True)
class EmbeddedLab:
    url: str
    ca_file: Path | None
    username: str
    password: str
    server: LabServer


def fleet_key(fleet: str) -> str:
    """A folder name for a fleet given by name (`demo`) or by path (`fleets/big.yaml`)."""
    name = Path(fleet).name
    for suffix in (".yaml", ".yml"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name or "fleet"


def lab_state_dir(engine_spec: EngineSpec, state_root: Path | None = None) -> Path:
    if engine_spec.lab_fleet is None:
        raise LabError("the spec's engine is not a lab engine")
    if engine_spec.lab_state is not None and (state_root is None
                                              or Path(state_root) == Path(engine_spec.lab_state)):
        return Path(engine_spec.lab_state)
    return Path(state_root or DEFAULT_STATE_ROOT) / fleet_key(engine_spec.lab_fleet)


@contextmanager
def embedded_lab(engine_spec: EngineSpec, state_root: Path | None = None, *,
                 time_scale: float = 0.01) -> Iterator[EmbeddedLab]:
    if engine_spec.lab_fleet is None:
        raise LabError("the spec's engine is not a lab engine")
    state = lab_state_dir(engine_spec, state_root)
    with state_lock(state):
        check_fleet_mark(state, engine_spec.lab_fleet)
        server = LabServer(engine_spec.lab_fleet, state, time_scale=time_scale)
        with server:
            yield EmbeddedLab(server.url, server.ca_file, server.username, server.password,
                              server)
