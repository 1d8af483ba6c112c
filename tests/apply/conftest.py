"""Fixtures for the apply tests: the demo fleet served by the lab engine (real HTTPS, real
ovirtsdk4), host roots materialised once and copied per test, specs pointing at that lab, and
helpers that read the lab's request log and event log."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.access.endpoint import RealEndpoint
from reconciler.apply.runner import ApplyOptions, RunOutcome, execute
from reconciler.engine.retry import DEFAULT_TIMING
from reconciler.apply.executor import Timeouts
from reconciler_lab.faults import FaultConfig
from reconciler_lab.server import LabServer
from reconciler.spec import load_desired
from tests.support.secrets import write_secret

REPO = Path(__file__).resolve().parents[2]
LAB_SPEC = REPO / "specs" / "examples" / "lab.yaml"
TIME_SCALE = 0.005
# The production retry and poll policy, paced for the lab's clock (same attempts, shorter waits).
LAB_PACE = DEFAULT_TIMING.scaled(TIME_SCALE)
DEMO_HOSTS = ("amd-01", "m60-01", "m60-02", "t4-01")
MUTATING = ("POST", "PUT", "DELETE")
# Lab waits are short; a host that has not come back after this is not coming back.
TEST_TIMEOUTS = Timeouts(deactivate=20, install=20, activate=20, vm_shutdown=20, vm_stop=20,
                         vm_start=20, verify=10, probe=30)


@pytest.fixture(scope="session")
def pristine_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-fleet lab state folder with every host root materialised (copied by each test)."""
    state = tmp_path_factory.mktemp("pristine") / "demo"
    with LabServer("demo", state, time_scale=TIME_SCALE) as lab:
        for host in DEMO_HOSTS:
            lab.host_root(host)
    return state


@pytest.fixture
def demo_state(pristine_demo: Path, tmp_path: Path) -> Path:
    target = tmp_path / "lab"
    shutil.copytree(pristine_demo, target, symlinks=True)
    return target


def spec_body(**changes: Any) -> dict[str, Any]:
    body = yaml.safe_load(LAB_SPEC.read_text())
    body.update(changes)
    return body


def write_spec(path: Path, body: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


class ServedLab:
    """The demo fleet served in-process, with a spec that reaches it like a real engine."""

    def __init__(self, server: LabServer, state: Path, spec: Path, store: Path) -> None:
        self.server = server
        self.state = state
        self.spec = spec
        self.store = store

    def desired(self) -> Any:
        return load_desired([str(self.spec)])

    def endpoint(self, desired: Any = None) -> RealEndpoint:
        """The served lab reached as a real engine, polled at the lab's pace."""
        desired = desired or self.desired()
        return RealEndpoint(desired.engine, desired.host_access, timing=LAB_PACE)

    def apply(self, **options: Any) -> RunOutcome:
        options.setdefault("yes", True)
        options.setdefault("state", self.store)
        options.setdefault("timeouts", TEST_TIMEOUTS)
        out = io.StringIO()
        desired = self.desired()
        outcome = execute(desired, ApplyOptions(**options), self.endpoint(desired), out=out)
        self.output = out.getvalue()
        return outcome

    def plan(self) -> Any:
        from reconciler.observe.session import open_fleet
        from reconciler.plan import plan
        from reconciler.store import Store
        desired = self.desired()
        with open_fleet(desired, self.endpoint(desired)) as fleet:
            observed = fleet.observe()
        with Store(self.store) as store:
            applied = store.applied(str(desired.engine.url))
        return plan(desired, observed, applied)

    def host_ids(self) -> dict[str, str]:
        engine = self.server.engine
        assert engine is not None
        return {h.name: h.id for h in engine.hosts.values()}


@pytest.fixture
def served_lab(demo_state: Path, tmp_path: Path) -> Iterator[Callable[..., ServedLab]]:
    """served_lab(faults=None, spec_changes=None) -> a started ServedLab, stopped afterwards."""
    with ExitStack() as stack:
        def start(faults: FaultConfig | None = None, **spec_changes: Any) -> ServedLab:
            server = LabServer("demo", demo_state, time_scale=TIME_SCALE, faults=faults)
            stack.enter_context(server)
            password = tmp_path / "password"
            write_secret(password, server.password + "\n")
            engine = {"url": server.url, "username": server.username,
                      "passwordFrom": {"file": str(password)}, "caFile": str(server.ca_file)}
            body = spec_body(engine=engine, hostAccess={"localRoots": str(demo_state / "hosts")},
                             **spec_changes)
            spec = write_spec(tmp_path / "spec.yaml", body)
            return ServedLab(server, demo_state, spec, tmp_path / "state.db")
        yield start


def embedded_spec(tmp_path: Path, state: Path) -> Path:
    """lab.yaml with the embedded lab keeping its state in `state`."""
    body = spec_body(engine={"lab": {"fleet": "demo", "state": str(state)}})
    return write_spec(tmp_path / "embedded.yaml", body)


def reconcile(*args: str, cwd: Path | None = None, timeout: float = 120,
              **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *args], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=timeout, **kwargs)


def api_mutations(records: list[Any]) -> list[Any]:
    """Requests that change the fleet (SSO logins and logouts are not, and neither is the apply
    lock the run keeps on the engine as a quota of its data center)."""
    return [r for r in records if r.method in MUTATING and r.path.startswith("/ovirt-engine/api")
            and "/quotas" not in r.path]


_HOST_PATH = re.compile(r"/hosts/([^/]+)(/|$)")
_VM_PATH = re.compile(r"/vms/([^/]+)(/|$)")


def mutating_targets(records: list[Any], ids: dict[str, str]) -> list[str]:
    """Names of the hosts each mutating request of the request log touched, in order."""
    by_id = {v: k for k, v in ids.items()}
    out = []
    for rec in records:
        if rec.method not in MUTATING:
            continue
        match = _HOST_PATH.search(rec.path)
        if match:
            out.append(by_id.get(match.group(1), match.group(1)))
    return out


def unavailable_peaks(events: list[Any], host_cluster: dict[str, str],
                      host_names: dict[str, str]) -> dict[str, int]:
    """Per cluster, the most hosts that were out of `up` at one instant, rebuilt from the
    engine's events: 'switched to Maintenance mode by' (600, 620) takes a host out, 'was set to Up' (13) puts
    it back."""
    down: dict[str, set[str]] = {}
    peak: dict[str, int] = {}
    for ev in sorted(events, key=lambda e: e.index):
        name = host_names.get(ev.host_id or "")
        if name is None:
            continue
        cluster = host_cluster[name]
        current = down.setdefault(cluster, set())
        if ev.code in (600, 620):
            current.add(name)
        elif ev.code == 13:
            current.discard(name)
        peak[cluster] = max(peak.get(cluster, 0), len(current))
    return peak
