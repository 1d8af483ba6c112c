"""Events paging and search; persistence of the engine state across restarts."""
from __future__ import annotations

from pathlib import Path

import pytest

import ovirtsdk4.types as types

from reconciler_lab.server import LabServer
from tests.lab.conftest import connect, small_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


def _make_events(conn: object, n: int) -> None:
    hosts = conn.system_service().hosts_service()  # type: ignore[attr-defined]
    h = hosts.list(search="name=host1")[0]
    for i in range(n):
        hosts.host_service(h.id).update(types.Host(os=types.OperatingSystem(
            custom_kernel_cmdline=f"intel_iommu=on x={i}")))


def test_events_newest_first_and_from_paging(conn: object) -> None:
    _make_events(conn, 5)
    events = conn.system_service().events_service()  # type: ignore[attr-defined]
    latest = events.list(max=1)
    assert len(latest) == 1
    all_events = events.list()
    indexes = [e.index for e in all_events]
    assert indexes == sorted(indexes, reverse=True)          # newest first, as the engine sorts
    assert latest[0].index == indexes[0]
    cursor = indexes[3]
    newer = events.list(from_=cursor)
    assert [e.index for e in newer] == indexes[:3]
    assert all(e.index > cursor for e in newer)
    assert events.list(from_=indexes[0]) == []
    assert [e.code for e in events.list(search="type=43", max=2)] == [43, 43]
    assert all(e.severity == types.LogSeverity.NORMAL for e in events.list(search="severity=normal"))
    assert events.list(search="severity=error") == []
    assert events.event_service(str(indexes[0])).get().index == indexes[0]


def test_correlation_id_reaches_events(conn: object) -> None:
    hosts = conn.system_service().hosts_service()  # type: ignore[attr-defined]
    h = hosts.list(search="name=host2")[0]
    hosts.host_service(h.id).update(types.Host(vgpu_placement=types.VgpuPlacement.SEPARATED),
                                    headers={"Correlation-Id": "plan-42"})
    events = conn.system_service().events_service().list(  # type: ignore[attr-defined]
        search="correlation_id=plan-42")
    assert [e.code for e in events] == [43] and events[0].correlation_id == "plan-42"


def test_state_survives_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # Slow clock first, so the deactivation is still in flight when the lab stops.
    with LabServer(small_fleet(), state, time_scale=1.0) as lab, connect(lab) as conn:
        vms = conn.system_service().vms_service()
        vm = vms.list(search="name=vm-pass")[0]
        vms.vm_service(vm.id).host_devices_service().add(types.HostDevice(name="pci_0000_3b_00_0"))
        hosts = conn.system_service().hosts_service()
        h = hosts.list(search="name=host2")[0]
        hosts.host_service(h.id).update(types.Host(os=types.OperatingSystem(
            custom_kernel_cmdline="intel_iommu=on")))
        hosts.host_service(h.id).deactivate()
        assert hosts.host_service(h.id).get().status == types.HostStatus.PREPARING_FOR_MAINTENANCE
        last = conn.system_service().events_service().list(max=1)[0].index
    assert (state / "engine.json").exists()
    with LabServer(small_fleet(), state, time_scale=0.005) as lab, connect(lab) as conn:
        vms = conn.system_service().vms_service()
        vm2 = vms.list(search="name=vm-pass", follow="host_devices")[0]
        assert vm2.id == vm.id
        assert {d.name for d in vm2.host_devices} == {"pci_0000_3b_00_0", "pci_0000_3b_00_1"}
        hosts = conn.system_service().hosts_service()
        h2 = hosts.host_service(h.id)
        assert h2.get().os.custom_kernel_cmdline == "intel_iommu=on"
        assert h2.get().reinstallation_required is True
        # A transition in flight when the lab stopped completes after the restart.
        wait_for(lambda: h2.get().status == types.HostStatus.MAINTENANCE)
        events = conn.system_service().events_service().list(from_=last - 1)
        assert events[-1].index == last
        assert events[0].index > last


def test_state_file_is_written_atomically(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with LabServer(small_fleet(), state) as lab, connect(lab) as conn:
        conn.system_service().hosts_service().list()
    assert not list(state.glob("*.tmp*"))
