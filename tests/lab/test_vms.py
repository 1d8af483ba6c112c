"""VMs: host devices, mediated devices, consoles, power actions and the engine's rules for them."""
from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from reconciler_lab.server import LabServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab

GPU = "pci_0000_3b_00_0"
AUDIO = "pci_0000_3b_00_1"
GPU2 = "pci_0000_af_00_0"


def _vms(conn: sdk.Connection) -> sdk.services.VmsService:
    return conn.system_service().vms_service()


def _vm(conn: sdk.Connection, name: str) -> types.Vm:
    return _vms(conn).list(search=f"name={name}")[0]


def _host_id(conn: sdk.Connection, name: str) -> str:
    return conn.system_service().hosts_service().list(search=f"name={name}")[0].id


def _devs(svc: sdk.services.VmService) -> dict[str, bool]:
    return {d.name: bool(d.placeholder) for d in svc.host_devices_service().list()}


def _mdev(mtype: str | None, nodisplay: str = "false") -> types.VmMediatedDevice:
    params = [types.Property(name="nodisplay", value=nodisplay)]
    if mtype is not None:
        params.insert(0, types.Property(name="mdevType", value=mtype))
    return types.VmMediatedDevice(spec_params=params)


def _fault(call: object) -> sdk.Error:
    with pytest.raises(sdk.Error) as err:
        call()  # type: ignore[operator]
    return err.value


def test_vm_search_and_links(conn: sdk.Connection) -> None:
    vms = _vms(conn)
    assert sorted(v.name for v in vms.list(search="status=up")) == ["vm-pinned-up", "vm-web"]
    assert [v.name for v in vms.list(search="host=host2")] == ["vm-web"]
    assert len(vms.list(search="cluster=Default and name=vm-*", max=2)) == 2
    vm = _vm(conn, "vm-pass")
    assert vm.host_devices.href.endswith(f"/vms/{vm.id}/hostdevices")
    assert vm.mediated_devices.href.endswith(f"/vms/{vm.id}/mediateddevices")
    assert vm.placement_policy.affinity == types.VmAffinity.PINNED
    assert [h.id for h in vm.placement_policy.hosts] == [_host_id(conn, "host1")]


def test_attach_brings_iommu_siblings_as_placeholders(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-pass").id)
    added = svc.host_devices_service().add(types.HostDevice(name=GPU))
    assert added.name == GPU and not added.placeholder
    assert _devs(svc) == {GPU: False, AUDIO: True}
    # Adding the placeholder explicitly flips it.
    svc.host_devices_service().add(types.HostDevice(id=AUDIO.encode().hex()))
    assert _devs(svc) == {GPU: False, AUDIO: False}
    # DELETE of a primary only makes it a placeholder; the group goes once all are placeholders.
    svc.host_devices_service().device_service(GPU.encode().hex()).remove()
    assert _devs(svc) == {GPU: True, AUDIO: False}
    svc.host_devices_service().device_service(AUDIO.encode().hex()).remove()
    assert _devs(svc) == {}
    # A device with no IOMMU group goes at once.
    svc.host_devices_service().add(types.HostDevice(name="usb_usb1"))
    assert _devs(svc) == {"usb_usb1": False}
    svc.host_devices_service().device_service("usb_usb1".encode().hex()).remove()
    assert _devs(svc) == {}
    events = conn.system_service().events_service().list(search="type=10800 or type=10801")
    assert sorted(e.code for e in events) == [10800] * 3 + [10801] * 3


def test_hostdev_rules(conn: sdk.Connection) -> None:
    vms = _vms(conn)
    vgpu = vms.vm_service(_vm(conn, "vm-vgpu").id)
    err = _fault(lambda: vgpu.host_devices_service().add(types.HostDevice(name=GPU)))
    assert err.code == 409 and "VM must be pinned to a host" in str(err)
    vgpu.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(name="host1"), types.Host(name="host2")])))
    err = _fault(lambda: vgpu.host_devices_service().add(types.HostDevice(name=GPU)))
    assert err.code == 409 and "pinned to a single host" in str(err)
    running = vms.vm_service(_vm(conn, "vm-pinned-up").id)
    err = _fault(lambda: running.host_devices_service().add(types.HostDevice(name=GPU)))
    assert err.code == 409 and "because the VM is in Up status" in str(err)
    passvm = vms.vm_service(_vm(conn, "vm-pass").id)
    err = _fault(lambda: passvm.host_devices_service().add(types.HostDevice(name="pci_0000_99_00_0")))
    assert err.code == 400 and "specified host devices not found" in str(err)
    err = _fault(lambda: passvm.host_devices_service().device_service("00").remove())
    assert isinstance(err, sdk.NotFoundError)


def test_a_pci_device_on_two_vms_is_refused_at_the_second_start(conn: sdk.Connection) -> None:
    # AddVmHostDevicesCommand refuses only a SCSI device in use; for PCI devices the scheduler's
    # HostDevice filter refuses to start a VM whose devices another running VM holds.
    vms = _vms(conn)
    first = vms.vm_service(_vm(conn, "vm-pass").id)
    second = vms.vm_service(_vm(conn, "vm-vgpu").id)
    second.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(name="host1")])))
    first.host_devices_service().add(types.HostDevice(name=GPU))
    second.host_devices_service().add(types.HostDevice(name=AUDIO))
    assert _devs(first) == {GPU: False, AUDIO: True}
    assert _devs(second) == {GPU: True, AUDIO: False}
    first.start()
    wait_for(lambda: first.get().status == types.VmStatus.UP)
    err = _fault(second.start)
    assert err.code == 409
    assert "did not satisfy internal filter HostDevice because some of the required host " \
           "devices are unavailable" in str(err)
    first.stop()
    wait_for(lambda: first.get().status == types.VmStatus.DOWN)
    second.start()
    wait_for(lambda: second.get().status == types.VmStatus.UP)


def test_changing_pinned_host_drops_host_devices(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-pass").id)
    svc.host_devices_service().add(types.HostDevice(name=GPU2))
    svc.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(id=_host_id(conn, "host2"))])))
    assert _devs(svc) == {}


def test_any_change_of_the_pinned_hosts_drops_host_devices(conn: sdk.Connection) -> None:
    # UpdateVmCommand#isDedicatedVmForVdsChanged: the pinned hosts as a set, order aside.
    svc = _vms(conn).vm_service(_vm(conn, "vm-pass").id)
    svc.host_devices_service().add(types.HostDevice(name=GPU2))
    svc.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(name="host1")])))            # the same host again: kept
    assert _devs(svc) == {GPU2: False}
    svc.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(name="host1"), types.Host(name="host2")])))
    assert _devs(svc) == {}
    assert [h.id for h in svc.get().placement_policy.hosts] == [
        _host_id(conn, "host1"), _host_id(conn, "host2")]


def test_start_with_host_devices_needs_passthrough_host(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-pass").id)
    svc.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(id=_host_id(conn, "host2"))])))
    svc.host_devices_service().add(types.HostDevice(name=GPU))
    err = _fault(svc.start)
    assert err.code == 409 and "does not support host device passthrough" in str(err)
    svc.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(id=_host_id(conn, "host1"))])))
    svc.host_devices_service().add(types.HostDevice(name=GPU))
    svc.start()
    wait_for(lambda: svc.get().status == types.VmStatus.UP)
    host1 = conn.system_service().hosts_service().host_service(_host_id(conn, "host1"))
    gpu = host1.devices_service().device_service(GPU.encode().hex()).get()
    assert gpu.vm.id == svc.get().id
    err = _fault(svc.start)
    assert err.code == 409


def test_mediated_devices_crud_and_rules(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-vgpu").id)
    mdevs = svc.mediated_devices_service()
    assert [m.spec_params[0].value for m in mdevs.list()] == ["nvidia-222"]
    err = _fault(lambda: mdevs.add(_mdev(None)))
    assert err.code == 400 and "parameter value is null" in str(err)
    added = mdevs.add(_mdev("nvidia-222", "true"))
    assert added.id and {p.name: p.value for p in added.spec_params} == {
        "mdevType": "nvidia-222", "nodisplay": "true"}
    # PUT replaces every spec param: driverParams sent now, nodisplay dropped.
    mdevs.device_service(added.id).update(types.VmMediatedDevice(spec_params=[
        types.Property(name="mdevType", value="nvidia-222"),
        types.Property(name="driverParams", value="enable_uvm=1")]))
    got = mdevs.device_service(added.id).get()
    assert {p.name: p.value for p in got.spec_params} == {
        "mdevType": "nvidia-222", "driverParams": "enable_uvm=1"}
    err = _fault(lambda: mdevs.device_service(added.id).update(_mdev(None)))
    assert err.code == 400
    mdevs.device_service(added.id).remove()
    assert len(mdevs.list()) == 1
    assert isinstance(_fault(lambda: mdevs.device_service(added.id).remove()), sdk.NotFoundError)


def test_vgpu_consumes_instances_one_type_per_gpu(conn: sdk.Connection) -> None:
    vms = _vms(conn)
    svc = vms.vm_service(_vm(conn, "vm-vgpu").id)
    svc.update(types.Vm(placement_policy=types.VmPlacementPolicy(hosts=[types.Host(name="host3")])))
    svc.start()
    wait_for(lambda: svc.get().status == types.VmStatus.UP)
    host3 = conn.system_service().hosts_service().host_service(_host_id(conn, "host3"))
    avail = {d.name: {t.name: t.available_instances for t in d.m_dev_types}
             for d in host3.devices_service().list() if d.m_dev_types}
    used = [n for n, a in avail.items() if a["nvidia-222"] == 15]
    assert len(used) == 1
    assert avail[used[0]]["nvidia-230"] == 0          # the GPU now runs T4-1B only
    other = next(n for n in avail if n not in used)
    assert avail[other]["nvidia-230"] == 1
    # A mdev added while running is configuration only: consumption changes at the next start.
    svc.mediated_devices_service().add(_mdev("nvidia-222"))
    d = host3.devices_service().device_service(used[0].encode().hex()).get()
    assert {t.name: t.available_instances for t in d.m_dev_types}["nvidia-222"] == 15
    svc.stop()
    d = host3.devices_service().device_service(used[0].encode().hex()).get()
    assert {t.name: t.available_instances for t in d.m_dev_types}["nvidia-222"] == 16
    svc.start()
    d = host3.devices_service().device_service(used[0].encode().hex()).get()
    assert {t.name: t.available_instances for t in d.m_dev_types}["nvidia-222"] == 14


def test_start_without_vgpu_capacity_fails(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-vgpu").id)
    svc.update(types.Vm(placement_policy=types.VmPlacementPolicy(hosts=[types.Host(name="host3")])))
    mdevs = svc.mediated_devices_service()
    for m in mdevs.list():
        mdevs.device_service(m.id).remove()
    for _ in range(3):                      # T4-16Q: one per GPU, two GPUs on host3
        mdevs.add(_mdev("nvidia-230"))
    err = _fault(svc.start)
    assert err.code == 409
    assert "did not satisfy internal filter MDevice" in str(err) and "nvidia-230" in str(err)
    assert svc.get().status == types.VmStatus.DOWN


def test_follow_on_vm_list_is_one_request(lab: LabServer, conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-pass").id)
    svc.host_devices_service().add(types.HostDevice(name=GPU))
    for follow in ("host_devices,mediated_devices,graphics_consoles",
                   "hostdevices,mediateddevices,graphicsconsoles"):
        lab.clear_request_log()
        vms = {v.name: v for v in _vms(conn).list(follow=follow)}
        assert len(lab.request_log) == 1
        assert {d.name: bool(d.placeholder) for d in vms["vm-pass"].host_devices} == {
            GPU: False, AUDIO: True}
        assert [m.spec_params[0].value for m in vms["vm-vgpu"].mediated_devices] == ["nvidia-222"]
        assert [g.protocol for g in vms["vm-web"].graphics_consoles] == [types.GraphicsType.VNC]
    one = svc.get(follow="host_devices")
    assert len(one.host_devices) == 2


def test_graphics_console_switch_to_vnc(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-web").id)
    consoles = svc.graphics_consoles_service()

    def followed() -> set[types.GraphicsType]:
        vms = {v.name: v for v in _vms(conn).list(follow="graphics_consoles")}
        return {c.protocol for c in vms["vm-web"].graphics_consoles}

    assert followed() == {types.GraphicsType.VNC}          # now written and kept by the lab
    consoles.add(types.GraphicsConsole(protocol=types.GraphicsType.SPICE))
    assert {c.protocol for c in consoles.list()} == {types.GraphicsType.VNC, types.GraphicsType.SPICE}
    assert followed() == {types.GraphicsType.VNC, types.GraphicsType.SPICE}
    vnc = next(c for c in consoles.list() if c.protocol == types.GraphicsType.VNC)
    consoles.console_service(vnc.id).remove()
    assert [c.protocol for c in consoles.list()] == [types.GraphicsType.SPICE]
    err = _fault(lambda: consoles.add(types.GraphicsConsole(protocol=types.GraphicsType.SPICE)))
    assert err.code == 409


def test_power_actions_and_events(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-vgpu").id)
    svc.start()
    assert svc.get().status in (types.VmStatus.WAIT_FOR_LAUNCH, types.VmStatus.POWERING_UP,
                                types.VmStatus.UP)
    wait_for(lambda: svc.get().status == types.VmStatus.UP)
    svc.shutdown()
    wait_for(lambda: svc.get().status == types.VmStatus.DOWN)
    err = _fault(svc.stop)
    assert err.code == 409
    events = conn.system_service().events_service().list(search="vm=vm-vgpu")
    assert [e.code for e in sorted(events, key=lambda e: e.index)] == [153, 32, 73, 61]


def test_vm_update_display(conn: sdk.Connection) -> None:
    svc = _vms(conn).vm_service(_vm(conn, "vm-web").id)
    svc.update(types.Vm(display=types.Display(type=types.DisplayType.SPICE)))
    assert svc.get().display.type == types.DisplayType.SPICE
