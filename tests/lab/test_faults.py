"""Fault injection: error rate, latency, dropped connections, token expiry, bad hosts."""
from __future__ import annotations

from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from reconciler_lab.faults import FaultConfig, FaultSpecError
from reconciler_lab.fleet import LabFleet
from reconciler_lab.server import LabServer
from tests.lab.conftest import connect, small_fleet
from tests.support.clock import ManualClock
from tests.support.waiting import wait_for


def test_parse_fault_string() -> None:
    cfg = FaultConfig.parse("error-rate=0.1,latency-ms=5,drop-rate=0.01,token-ttl=30,"
                            "never-returns=host1,host4,install-fails=host2")
    assert cfg == FaultConfig(error_rate=0.1, latency_ms=5, drop_rate=0.01, token_ttl=30,
                              never_returns=("host1", "host4"), install_fails=("host2",))
    for bad in ("error-rate=2", "error-rate=nan", "latency-ms=x", "latency-ms=inf",
                "latency-ms=nan", "token-ttl=-1", "token-ttl=inf", "colour=red", "justaword"):
        with pytest.raises(FaultSpecError):
            FaultConfig.parse(bad)


def _lab(tmp_path: Path, faults: FaultConfig, fleet: LabFleet | None = None,
         clock: ManualClock | None = None) -> LabServer:
    return LabServer(fleet or small_fleet(), tmp_path / "s", faults=faults, time_scale=0.005,
                     clock=clock)


@pytest.mark.lab
def test_error_rate_gives_5xx_faults(tmp_path: Path) -> None:
    with _lab(tmp_path, FaultConfig(error_rate=0.5, seed=7)) as lab, connect(lab) as conn:
        outcomes = []
        for _ in range(30):
            try:
                conn.system_service().hosts_service().list()
                outcomes.append("ok")
            except sdk.Error as err:
                assert err.code == 503 and "Injected lab fault" in str(err)
                outcomes.append("fault")
        assert "ok" in outcomes and "fault" in outcomes
        assert {r.status for r in lab.request_log if r.path.endswith("/hosts")} == {200, 503}


@pytest.mark.lab
def test_latency_is_added_to_api_requests(tmp_path: Path) -> None:
    clock = ManualClock()      # the latency moves this clock on; the test never waits for it
    with _lab(tmp_path, FaultConfig(latency_ms=30), clock=clock) as lab, connect(lab) as conn:
        conn.system_service().hosts_service().list()
        api = [r for r in lab.request_log if r.path.startswith("/ovirt-engine/api")]
        sso = [r for r in lab.request_log if r.path.endswith("/sso/oauth/token")]
        assert api and all(r.seconds == pytest.approx(0.03) for r in api)
        assert sso and all(r.seconds == 0 for r in sso)        # the login is not delayed


@pytest.mark.lab
def test_dropped_connections(tmp_path: Path) -> None:
    with _lab(tmp_path, FaultConfig(drop_rate=1.0)) as lab, connect(lab) as conn:
        with pytest.raises(sdk.Error):
            conn.system_service().hosts_service().list()
        assert any(r.status == 0 and r.bytes_sent == 0 for r in lab.request_log)


@pytest.mark.lab
def test_token_expiry_makes_sdk_login_again(tmp_path: Path) -> None:
    clock = ManualClock()
    with _lab(tmp_path, FaultConfig(token_ttl=30), clock=clock) as lab, connect(lab) as conn:
        hosts = conn.system_service().hosts_service()
        hosts.list()

        def answers() -> list[tuple[str, int]]:
            lab.clear_request_log()
            assert len(hosts.list()) == 3
            return [(r.path.rsplit("/", 1)[-1], r.status) for r in lab.request_log]

        clock.advance(29.5)
        assert answers() == [("hosts", 200)]                   # still alive just before its end
        clock.advance(0.5)
        assert answers() == [("hosts", 401), ("token", 200), ("hosts", 200)]


def _reinstall(conn: sdk.Connection, name: str) -> sdk.services.HostService:
    hosts = conn.system_service().hosts_service()
    svc = hosts.host_service(hosts.list(search=f"name={name}")[0].id)
    svc.update(types.Host(os=types.OperatingSystem(custom_kernel_cmdline="intel_iommu=on")))
    svc.deactivate()
    wait_for(lambda: svc.get().status == types.HostStatus.MAINTENANCE)
    svc.install(reboot=True, activate=True)
    return svc


@pytest.mark.lab
def test_host_that_never_returns(tmp_path: Path) -> None:
    with _lab(tmp_path, FaultConfig(never_returns=("host2",))) as lab, connect(lab) as conn:
        svc = _reinstall(conn, "host2")
        wait_for(lambda: svc.get().status == types.HostStatus.NON_RESPONSIVE)
        assert conn.system_service().events_service().list(search="type=12 and host=host2")


@pytest.mark.lab
def test_never_returns_behaviour_from_fleet(tmp_path: Path) -> None:
    with _lab(tmp_path, FaultConfig(), small_fleet(behaviour="never-returns")) as lab, \
            connect(lab) as conn:
        hosts = conn.system_service().hosts_service()
        vm = conn.system_service().vms_service().list(search="name=vm-pinned-up")[0]
        conn.system_service().vms_service().vm_service(vm.id).stop()
        svc = _reinstall(conn, "host1")
        wait_for(lambda: svc.get().status == types.HostStatus.NON_RESPONSIVE)
        assert hosts.list(search="status=non_responsive")[0].name == "host1"


@pytest.mark.lab
def test_install_fails(tmp_path: Path) -> None:
    with _lab(tmp_path, FaultConfig(install_fails=("host2",))) as lab, connect(lab) as conn:
        svc = _reinstall(conn, "host2")
        wait_for(lambda: svc.get().status == types.HostStatus.INSTALL_FAILED)
        assert svc.get().reinstallation_required is True
        assert conn.system_service().events_service().list(search="type=505")
