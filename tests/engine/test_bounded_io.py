"""Engine I/O never hangs: dropped, stalled and never-answered requests end in an answer or a
clear error within a bound, through the real SDK against the lab engine."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.access.endpoint import RealEndpoint
from reconciler.engine.errors import EngineUnavailable
from reconciler.engine.retry import DEFAULT_TIMING
from reconciler.observe.session import open_fleet
from reconciler.spec.model import DesiredState, EngineSpec
from reconciler_lab.faults import FaultConfig
from reconciler_lab.server import LabServer
from tests.support.secrets import write_secret

pytestmark = pytest.mark.lab

# A generous ceiling for one observation of the demo fleet; measured runs take 0.02-2 s.
OBSERVE_CEILING = 60.0


def _desired(lab: LabServer, password: Path, timeout: float = 60.0) -> DesiredState:
    write_secret(password, lab.password)
    return DesiredState(engine=EngineSpec(url=lab.url, username=lab.username,
                                          password_file=password, ca_file=Path(lab.ca_file),
                                          timeout_seconds=timeout))


def test_observes_under_dropped_connections_end_within_a_bound(tmp_path: Path) -> None:
    """20 observations, each with 30 % of its requests dropped unanswered (the case that used to
    spin for ever: a failure of the VM list read while waiting for the host list)."""
    outcomes = []
    for seed in range(20):
        with LabServer("demo", tmp_path / f"lab{seed}", time_scale=0.01,
                       faults=FaultConfig(drop_rate=0.3, seed=seed)) as lab:
            desired = _desired(lab, tmp_path / "pw")
            endpoint = RealEndpoint(desired.engine, desired.host_access)
            started = time.monotonic()
            try:
                with open_fleet(desired, endpoint) as fleet:
                    observed = fleet.observe(probe=False)
                outcomes.append(("ok", len(observed.hosts)))
            except EngineUnavailable as err:
                outcomes.append(("failed", str(err)))
            took = time.monotonic() - started
            assert took < OBSERVE_CEILING, f"seed {seed}: observe took {took:.1f}s"
    assert all(o == ("ok", 4) or (o[0] == "failed" and "kept failing" in o[1])
               for o in outcomes), outcomes


def test_a_stalled_request_times_out_and_names_the_request(tmp_path: Path) -> None:
    with LabServer("demo", tmp_path / "lab", time_scale=0.01,
                   faults=FaultConfig(stall_rate=1.0)) as lab:
        desired = _desired(lab, tmp_path / "pw", timeout=1.0)
        endpoint = RealEndpoint(desired.engine, desired.host_access, DEFAULT_TIMING.scaled(0.01))
        with pytest.raises(EngineUnavailable) as err, open_fleet(desired, endpoint) as fleet:
            fleet.observe(probe=False)
    message = str(err.value)
    assert message.startswith("cannot list clusters"), message
    assert "6 attempts" in message and "timed out" in message
    assert "pycurl" not in message and "0x" not in message


def test_a_stalled_login_times_out(tmp_path: Path) -> None:
    with LabServer("demo", tmp_path / "lab", time_scale=0.01,
                   faults=FaultConfig(sso_stall=True)) as lab:
        desired = _desired(lab, tmp_path / "pw", timeout=1.0)
        endpoint = RealEndpoint(desired.engine, desired.host_access, DEFAULT_TIMING.scaled(0.01))
        with pytest.raises(EngineUnavailable, match="cannot authenticate .* timed out"):
            endpoint.connect()
