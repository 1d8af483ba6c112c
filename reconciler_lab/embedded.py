"""Run the lab engine in-process for specs whose engine is `lab: {fleet: ...}`.

State lives under `<state_root>/<fleet>/` (or the spec's `engine.lab.state`), so `plan`, `apply`
and `plan` again, each a separate CLI run, see one continuing fleet. One engine per state folder
(`statelock`): when another process already runs a lab there (a controller on a lab spec, `lab
serve`), this one uses that lab over its API instead of starting its own (`sharing`). A state made
from another fleet is refused (`fleetmark`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler_lab.fleetmark import LabFleetChanged, check_fleet_mark, fleet_file
from reconciler_lab.server import LabError, LabServer
from reconciler_lab.sharing import publish, serving_lab, withdraw
from reconciler_lab.statelock import LabStateBusy, state_lock
from reconciler.spec.model import EngineSpec

DEFAULT_STATE_ROOT = Path(".reconciler/lab")


@dataclass(frozen=True)
class EmbeddedLab:
    url: str
    ca_file: Path | None
    username: str
    password: str
    server: LabServer | None           # None: another process serves this state (shared)
    time_scale: float = 0.01
    host_root: Callable[[str], Path] | None = None

    @property
    def shared(self) -> bool:
        return self.server is None


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


def _fleet_digest(fleet: str) -> str | None:
    try:
        return hashlib.sha256(fleet_file(fleet).read_bytes()).hexdigest()
    except OSError:
        return None


@contextmanager
def embedded_lab(engine_spec: EngineSpec, state_root: Path | None = None, *,
                 time_scale: float = 0.01) -> Iterator[EmbeddedLab]:
    if engine_spec.lab_fleet is None:
        raise LabError("the spec's engine is not a lab engine")
    state = lab_state_dir(engine_spec, state_root)
    digest = _fleet_digest(engine_spec.lab_fleet)
    with ExitStack() as stack:
        try:
            stack.enter_context(state_lock(state))
        except LabStateBusy:
            served = serving_lab(state)
            if served is None:
                raise          # `lab drift` / `lab reset` at work, or a lab serving nothing
            if served.fleet_sha256 and digest and served.fleet_sha256 != digest:
                raise LabFleetChanged(
                    f"the lab serving {state} (pid {served.pid}) runs another fleet than "
                    f"{fleet_file(engine_spec.lab_fleet)}; stop it or use another state "
                    "folder") from None
            lab = EmbeddedLab(served.url, served.ca_file, served.username, served.password,
                              None, served.time_scale, served.host_root)
        else:
            check_fleet_mark(state, engine_spec.lab_fleet)
            server = stack.enter_context(LabServer(engine_spec.lab_fleet, state,
                                                   time_scale=time_scale))
            publish(state, url=server.url, ca_file=server.ca_file, username=server.username,
                    password=server.password, time_scale=server.time_scale,
                    fleet_sha256=digest)
            stack.callback(withdraw, state)
            lab = EmbeddedLab(server.url, server.ca_file, server.username, server.password,
                              server, server.time_scale, server.host_root)
        yield lab
