"""Hosts: listing, search, follow, update, and the maintenance / install / activate state machine."""
from __future__ import annotations

from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from reconciler_lab.server import LabServer
from tests.lab.conftest import connect, small_fleet
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


def _hosts(conn: sdk.Connection) -> sdk.services.HostsService:
    return conn.system_service().hosts_service()


def _host(conn: sdk.Connection, name: str) -> types.Host:
    return _hosts(conn).list(search=f"name={name}")[0]


def _status(conn: sdk.Connection, host_id: str) -> str:
    return _hosts(conn).host_service(host_id).get().status.value


def test_search_by_name_glob_cluster_status(conn: sdk.Connection) -> None:
    hosts = _hosts(conn)
    assert sorted(h.name for h in hosts.list(search="name=host*")) == ["host1", "host2", "host3"]
    assert [h.name for h in hosts.list(search="cluster=amd")] == ["host3"]
    assert [h.name for h in hosts.list(search="name=host* and cluster=Default and status=up",
                                       max=1)] == ["host1"]
    assert hosts.list(search="status=maintenance") == []
    with pytest.raises(sdk.Error) as err:
        hosts.list(search="flavour=sweet")
    assert err.value.code == 400


def test_cpu_fields_and_links(conn: sdk.Connection) -> None:
    h = _host(conn, "host3")
    assert h.cpu.type == "AMD EPYC-Rome" and h.cpu.name.startswith("AMD EPYC")
    assert h.devices.href.endswith(f"/hosts/{h.id}/devices")   # <link rel="devices">
    cluster = conn.follow_link(h.cluster)
    assert cluster.cpu.type == "Secure AMD EPYC"
    assert cluster.cpu.architecture == types.Architecture.X86_64


def test_follow_devices_is_one_request(lab: LabServer, conn: sdk.Connection) -> None:
    conn.authenticate()
    lab.clear_request_log()
    hosts = _hosts(conn).list(follow="devices")
    assert len(lab.request_log) == 1
    devs = {d.name: d for d in hosts[0].devices}
    gpu = devs["pci_0000_3b_00_0"]
    assert gpu.id == "pci_0000_3b_00_0".encode().hex()
    assert gpu.product.id == "0x1eb8" and gpu.vendor.id == "0x10de"
    assert gpu.iommu_group == 30 and gpu.driver == "nvidia"
    assert gpu.parent_device.name == "pci_0000_00_00_0"
    assert {t.name: t.available_instances for t in gpu.m_dev_types}["nvidia-222"] == 16
    assert gpu.m_dev_types[0].human_readable_name == "GRID T4-1B"


def test_devices_service_and_one_device(conn: sdk.Connection) -> None:
    h = _host(conn, "host1")
    svc = _hosts(conn).host_service(h.id).devices_service()
    devices = svc.list()
    assert len(devices) == 6
    one = svc.device_service("pci_0000_3b_00_1".encode().hex()).get()
    assert one.name == "pci_0000_3b_00_1" and one.iommu_group == 30


def test_device_passthrough_from_booted_cmdline(conn: sdk.Connection) -> None:
    assert _host(conn, "host1").device_passthrough.enabled is True    # intel_iommu=on booted
    assert _host(conn, "host2").device_passthrough.enabled is False   # Intel without the arg
    assert _host(conn, "host3").device_passthrough.enabled is True    # AMD: on by default


def test_kernel_cmdline_needs_install_with_reboot(conn: sdk.Connection) -> None:
    h = _host(conn, "host2")
    svc = _hosts(conn).host_service(h.id)
    svc.update(types.Host(os=types.OperatingSystem(custom_kernel_cmdline="intel_iommu=on iommu=pt")))
    got = svc.get()
    assert got.os.custom_kernel_cmdline == "intel_iommu=on iommu=pt"
    assert got.reinstallation_required is True
    assert "intel_iommu=on" not in got.os.reported_kernel_cmdline
    with pytest.raises(sdk.Error) as err:
        svc.install(ssh=types.Ssh(authentication_method=types.SshAuthenticationMethod.PUBLICKEY))
    assert err.value.code == 409
    assert "Please move Host to Maintenance mode first" in str(err.value)
    svc.deactivate()
    wait_for(lambda: _status(conn, h.id) == "maintenance")
    svc.install(ssh=types.Ssh(authentication_method=types.SshAuthenticationMethod.PUBLICKEY),
                reboot=True)
    assert _status(conn, h.id) == "installing"
    seen = set()
    wait_for(lambda: seen.add(_status(conn, h.id)) or _status(conn, h.id) == "maintenance")
    got = svc.get()
    assert got.reinstallation_required is False
    assert got.os.reported_kernel_cmdline.endswith("intel_iommu=on iommu=pt")
    assert got.device_passthrough.enabled is True
    svc.activate()
    wait_for(lambda: _status(conn, h.id) == "up")


def test_install_without_reboot_leaves_booted_args(conn: sdk.Connection) -> None:
    h = _host(conn, "host2")
    svc = _hosts(conn).host_service(h.id)
    svc.update(types.Host(os=types.OperatingSystem(custom_kernel_cmdline="intel_iommu=on")))
    svc.deactivate()
    wait_for(lambda: _status(conn, h.id) == "maintenance")
    svc.install(reboot=False, activate=True)
    wait_for(lambda: _status(conn, h.id) == "up")
    got = svc.get()
    assert got.reinstallation_required is False
    assert "intel_iommu=on" not in got.os.reported_kernel_cmdline


def test_update_vgpu_placement(conn: sdk.Connection) -> None:
    h = _host(conn, "host1")
    svc = _hosts(conn).host_service(h.id)
    svc.update(types.Host(vgpu_placement=types.VgpuPlacement.SEPARATED))
    assert svc.get().vgpu_placement == types.VgpuPlacement.SEPARATED


def test_deactivate_migrates_migratable_vms(conn: sdk.Connection) -> None:
    vms = conn.system_service().vms_service()
    web = vms.list(search="name=vm-web")[0]
    assert web.host.id == _host(conn, "host2").id
    h2 = _host(conn, "host2")
    _hosts(conn).host_service(h2.id).deactivate()
    wait_for(lambda: _status(conn, h2.id) == "maintenance")
    web = vms.vm_service(web.id).get()
    assert web.status == types.VmStatus.UP and web.host.id != h2.id


def test_deactivate_refused_while_pinned_vm_runs(conn: sdk.Connection) -> None:
    h1 = _host(conn, "host1")
    svc = _hosts(conn).host_service(h1.id)
    with pytest.raises(sdk.Error) as err:
        svc.deactivate()
    assert err.value.code == 409
    assert "non-migratable VMs are: vm-pinned-up" in str(err.value)
    assert _status(conn, h1.id) == "up"


def test_deactivate_waits_for_vms_that_cannot_migrate(conn: sdk.Connection) -> None:
    vms = conn.system_service().vms_service()
    pinned = vms.vm_service(vms.list(search="name=vm-pinned-up")[0].id)
    pinned.stop()
    passvm = vms.vm_service(vms.list(search="name=vm-pass")[0].id)
    passvm.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        affinity=types.VmAffinity.MIGRATABLE)))
    passvm.host_devices_service().add(types.HostDevice(name="pci_0000_3b_00_0"))
    passvm.start()
    h1 = _host(conn, "host1")
    svc = _hosts(conn).host_service(h1.id)
    svc.deactivate(reason="kernel update")
    events = conn.system_service().events_service()
    wait_for(lambda: events.list(search="type=602", max=1))
    assert _status(conn, h1.id) == "preparing_for_maintenance"
    failed = events.list(search="type=602")[0]
    assert failed.host.id == h1.id and "not all Vms have been migrated" in failed.description
    assert events.list(search="type=600")[0].description.endswith("(Reason: kernel update).")
    passvm.stop()
    wait_for(lambda: _status(conn, h1.id) == "maintenance")
    with pytest.raises(sdk.Error) as err:
        svc.deactivate()
    assert err.value.code == 409 and "already in Maintenance mode" in str(err.value)


def test_activate_up_host_is_conflict(conn: sdk.Connection) -> None:
    h = _host(conn, "host3")
    with pytest.raises(sdk.Error) as err:
        _hosts(conn).host_service(h.id).activate()
    assert err.value.code == 409 and "Host in Up status" in str(err.value)


def test_host_actions_emit_events_with_codes(conn: sdk.Connection) -> None:
    h = _host(conn, "host3")
    svc = _hosts(conn).host_service(h.id)
    svc.update(types.Host(os=types.OperatingSystem(custom_kernel_cmdline="amd_iommu=on")))
    svc.deactivate()
    wait_for(lambda: _status(conn, h.id) == "maintenance")
    svc.install(reboot=True, activate=True)
    wait_for(lambda: _status(conn, h.id) == "up")
    events = conn.system_service().events_service().list(search="host=host3")
    codes = [e.code for e in sorted(events, key=lambda e: e.index)]
    assert codes == [43, 620, 15, 509, 504, 13]
    assert all(e.host.id == h.id for e in events)


def test_activate_aborts_maintenance(tmp_path: Path) -> None:
    with LabServer(small_fleet(), tmp_path / "s", time_scale=0.1) as lab, connect(lab) as conn:
        h = _host(conn, "host3")
        svc = _hosts(conn).host_service(h.id)
        svc.deactivate()
        assert _status(conn, h.id) == "preparing_for_maintenance"
        svc.activate()
        wait_for(lambda: _status(conn, h.id) == "up")
        assert lab.engine is not None
        # The superseded deactivation step has come due and was dropped: nothing is left staged.
        wait_for(lambda: lab.engine.queued_steps() == 0, what="the lab's staged steps")
        assert _status(conn, h.id) == "up"
