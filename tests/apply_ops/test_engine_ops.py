"""engine_ops against the lab engine through the real ovirtsdk4: each change takes effect and is
verified, repeats send nothing mutating, refusals are typed and not retried."""
from __future__ import annotations

from typing import Any

import ovirtsdk4 as sdk
import pytest

from reconciler.apply import engine_ops as ops
from reconciler.errors import ApplyError

from .conftest import FAST

pytestmark = pytest.mark.lab


def host(conn: sdk.Connection, name: str) -> Any:
    [h] = conn.system_service().hosts_service().list(search=f"name={name}")
    return h


def vm(conn: sdk.Connection, name: str) -> Any:
    [v] = conn.system_service().vms_service().list(search=f"name={name}")
    return v


def vm_service(conn: sdk.Connection, name: str) -> Any:
    return conn.system_service().vms_service().vm_service(vm(conn, name).id)


def hostdevs(conn: sdk.Connection, name: str) -> dict[str, bool]:
    return {d.name or bytes.fromhex(d.id).decode(): bool(d.placeholder)
            for d in vm_service(conn, name).host_devices_service().list()}


def mdevs(conn: sdk.Connection, name: str) -> dict[str, dict[str, str]]:
    current = vm_service(conn, name).get(follow="mediated_devices")
    return {d.id: {p.name: p.value for p in d.spec_params or ()}
            for d in current.mediated_devices or ()}


# --------------------------------------------------------------------------- host fields

def test_set_kernel_cmdline_takes_effect_and_repeat_sends_nothing(lab, conn, mark) -> None:
    out = ops.set_kernel_cmdline(conn, "gpu-01", "intel_iommu=on  iommu=pt rdblacklist=nouveau",
                                 timing=FAST)
    assert out.changed and out.target == "host gpu-01"
    h = host(conn, "gpu-01")
    assert h.os.custom_kernel_cmdline == "intel_iommu=on iommu=pt rdblacklist=nouveau"
    assert h.reinstallation_required is True

    m = mark()
    again = ops.set_kernel_cmdline(conn, "gpu-01", "intel_iommu=on iommu=pt rdblacklist=nouveau",
                                   timing=FAST)
    assert not again.changed
    assert m.mutating() == []
    assert len(m.records()) == 1   # the id is cached: one read of the host, nothing else


def test_set_vgpu_placement(lab, conn, mark) -> None:
    assert ops.set_vgpu_placement(conn, "gpu-01", "separated", timing=FAST).changed
    assert host(conn, "gpu-01").vgpu_placement == sdk.types.VgpuPlacement.SEPARATED
    m = mark()
    assert not ops.set_vgpu_placement(conn, "gpu-01", "separated", timing=FAST).changed
    assert m.mutating() == []


def test_invalid_values_are_refused_before_any_request(lab, conn, mark) -> None:
    m = mark()
    with pytest.raises(ApplyError, match="invalid vGPU placement"):
        ops.set_vgpu_placement(conn, "gpu-01", "spread", timing=FAST)
    with pytest.raises(ApplyError, match="invalid kernel command line"):
        ops.set_kernel_cmdline(conn, "gpu-01", "intel_iommu=on\nrm -rf /", timing=FAST)
    with pytest.raises(ApplyError, match="invalid host name or id"):
        ops.deactivate_host(conn, "gpu-01; reboot", timing=FAST)
    with pytest.raises(ApplyError, match="invalid correlation id"):
        ops.activate_host(conn, "gpu-01", correlation_id="run 1!", timing=FAST)
    with pytest.raises(ApplyError, match="invalid affinity"):
        ops.pin_vm(conn, "cad-01", "gpu-01", affinity="sticky", timing=FAST)
    with pytest.raises(ApplyError, match="invalid host device name"):
        ops.attach_host_device(conn, "cad-01", "pci 0000", timing=FAST)
    with pytest.raises(ApplyError, match="invalid mediated device id"):
        ops.remove_mediated_device(conn, "render-01", "not-a-uuid", timing=FAST)
    assert m.records() == []


def test_unknown_host_is_a_clear_error(lab, conn) -> None:
    with pytest.raises(ops.NotFoundOnEngine, match="no host named 'gpu-99'"):
        ops.set_vgpu_placement(conn, "gpu-99", "separated", timing=FAST)


def test_host_can_be_named_by_id(lab, conn) -> None:
    host_id = host(conn, "gpu-02").id
    assert ops.set_vgpu_placement(conn, host_id, "separated", timing=FAST).changed
    assert host(conn, "gpu-02").vgpu_placement == sdk.types.VgpuPlacement.SEPARATED


# --------------------------------------------------------------------------- host cycle

def test_full_host_cycle_applies_the_kernel_cmdline(lab, conn, mark) -> None:
    ops.set_kernel_cmdline(conn, "gpu-01", "intel_iommu=on iommu=pt", timing=FAST)
    out = ops.deactivate_host(conn, "gpu-01", timeout=10, timing=FAST)
    assert out.changed
    assert host(conn, "gpu-01").status == sdk.types.HostStatus.MAINTENANCE
    # The migratable VM left the host.
    assert vm(conn, "web-01").host.id == host(conn, "gpu-02").id

    ops.install_host(conn, "gpu-01", timeout=20, timing=FAST)
    h = host(conn, "gpu-01")
    assert h.status == sdk.types.HostStatus.MAINTENANCE
    assert h.reinstallation_required is False
    assert "iommu=pt" in h.os.reported_kernel_cmdline.split()

    ops.activate_host(conn, "gpu-01", timeout=10, timing=FAST)
    assert host(conn, "gpu-01").status == sdk.types.HostStatus.UP

    m = mark()
    assert not ops.activate_host(conn, "gpu-01", timeout=10, timing=FAST).changed
    assert m.mutating() == []


def test_deactivate_is_idempotent(lab, conn, mark) -> None:
    m = mark()
    assert not ops.deactivate_host(conn, "gpu-05", timeout=10, timing=FAST).changed
    assert m.mutating() == []


def test_install_outside_maintenance_is_a_precondition_error_not_retried(lab, conn, mark) -> None:
    m = mark()
    with pytest.raises(ops.PreconditionFailed, match="Maintenance") as info:
        ops.install_host(conn, "gpu-01", timeout=10, timing=FAST)
    assert info.value.code == 409
    installs = [r for r in m.mutating() if r.path.endswith("/install")]
    assert len(installs) == 1
    assert host(conn, "gpu-01").status == sdk.types.HostStatus.UP


def test_install_with_activate_waits_for_up(lab, conn) -> None:
    ops.install_host(conn, "gpu-05", activate=True, timeout=20, timing=FAST)
    assert host(conn, "gpu-05").status == sdk.types.HostStatus.UP


def test_never_returning_host_raises_host_did_not_return(lab, conn) -> None:
    with pytest.raises(ops.HostDidNotReturn, match="gpu-03 did not return to maintenance") as info:
        ops.install_host(conn, "gpu-03", timeout=2, timing=FAST)
    assert "non_responsive" in str(info.value)
    assert isinstance(info.value, ApplyError)


def test_failed_install_raises_install_failed(lab, conn) -> None:
    with pytest.raises(ops.InstallFailed, match="gpu-04"):
        ops.install_host(conn, "gpu-04", timeout=10, timing=FAST)


def test_maintenance_refused_for_pinned_vm_names_it(lab, conn) -> None:
    with pytest.raises(ops.MaintenanceBlocked, match="cad-02") as info:
        ops.deactivate_host(conn, "gpu-02", timeout=5, timing=FAST)
    assert info.value.vms == ("cad-02 (pinned)",)
    assert info.value.code == 409
    assert isinstance(info.value, ops.PreconditionFailed)
    assert host(conn, "gpu-02").status == sdk.types.HostStatus.UP


def test_host_stuck_in_preparing_for_maintenance_names_the_vms(lab, conn) -> None:
    with pytest.raises(ops.MaintenanceBlocked, match="stuck in preparing_for_maintenance") as info:
        ops.deactivate_host(conn, "gpu-06", timeout=0.5, timing=FAST)
    assert info.value.vms == ("desk-01",)
    assert "desk-01" in str(info.value)
    assert host(conn, "gpu-06").status == sdk.types.HostStatus.PREPARING_FOR_MAINTENANCE


# --------------------------------------------------------------------------- transient faults

def test_transient_errors_are_retried_to_success(start_lab, connect) -> None:
    from reconciler_lab.faults import FaultConfig
    lab = start_lab(faults=FaultConfig(error_rate=0.3, seed=4))
    conn = connect(lab)
    for placement in ("separated", "consolidated", "separated"):
        ops.set_vgpu_placement(conn, "gpu-01", placement, timing=FAST)
    ops.set_kernel_cmdline(conn, "gpu-01", "intel_iommu=on iommu=pt", timing=FAST)
    statuses = [r.status for r in lab.request_log if r.path.startswith("/ovirt-engine/api")]
    assert 503 in statuses            # faults did happen, and the changes still landed:
    engine_host = lab.engine.host_by_name("gpu-01")
    assert engine_host.vgpu_placement == "separated"
    assert engine_host.custom_kernel_cmdline == "intel_iommu=on iommu=pt"


def test_dropped_connections_are_retried_without_doubling_an_add(start_lab, connect) -> None:
    from reconciler_lab.faults import FaultConfig
    lab = start_lab(faults=FaultConfig(drop_rate=0.3, seed=11))
    conn = connect(lab)
    for _ in range(3):
        ops.add_mediated_device(conn, "render-01", "nvidia-18", timing=FAST)
    assert any(r.status == 0 for r in lab.request_log)   # connections were dropped
    engine_vm = lab.engine.vm_by_name("render-01")
    assert len(engine_vm.mdevs) == 3


def test_a_change_whose_reply_was_lost_is_not_sent_again(lab, conn, mark) -> None:
    # The engine applied the add, then the reply was lost on the wire: the retry re-reads first.
    service = vm_service(conn, "render-01").mediated_devices_service()
    params = [sdk.types.Property(name="mdevType", value="nvidia-18")]
    sent = []

    def add_then_lose_reply() -> Any:
        sent.append(service.add(sdk.types.VmMediatedDevice(spec_params=params)))
        raise sdk.ConnectionError("Error while sending HTTP request: (56, 'Recv failure')")

    ctx = ops._ctx(conn, None, FAST)
    result = ctx.call("add a mediated device", add_then_lose_reply,
                      landed=lambda: len(mdevs(conn, "render-01")) == 1)
    assert result is None and len(sent) == 1
    assert len(mdevs(conn, "render-01")) == 1


def test_retry_budget_exhausted_is_engine_unavailable(start_lab, connect) -> None:
    from reconciler_lab.faults import FaultConfig
    lab = start_lab(faults=FaultConfig(error_rate=1.0))
    conn = connect(lab)
    with pytest.raises(ops.EngineUnavailable, match="kept failing after 3 attempts"):
        ops.set_vgpu_placement(conn, "gpu-01", "separated",
                               timing=ops.Timing(retry=FAST.retry, attempts=3, poll=FAST.poll))


# --------------------------------------------------------------------------- VMs

def test_pin_and_attach_host_device_with_iommu_sibling(lab, conn, mark) -> None:
    ops.pin_vm(conn, "plain-01", "gpu-01", timing=FAST)
    policy = vm(conn, "plain-01").placement_policy
    assert [h.id for h in policy.hosts] == [host(conn, "gpu-01").id]
    assert policy.affinity == sdk.types.VmAffinity.PINNED

    out = ops.attach_host_device(conn, "plain-01", "pci_0000_03_00_0", timing=FAST)
    assert out.changed
    assert hostdevs(conn, "plain-01") == {"pci_0000_03_00_0": False, "pci_0000_03_00_1": True}

    m = mark()
    assert not ops.pin_vm(conn, "plain-01", "gpu-01", timing=FAST).changed
    assert not ops.attach_host_device(conn, "plain-01", "pci_0000_03_00_0", timing=FAST).changed
    assert m.mutating() == []
    # Ids are cached per connection: each no-op is exactly its one read.
    assert [r.method for r in m.records()] == ["GET", "GET"]

    assert ops.detach_host_device(conn, "plain-01", "pci_0000_03_00_0", timing=FAST).changed
    assert hostdevs(conn, "plain-01") == {}
    m = mark()
    assert not ops.detach_host_device(conn, "plain-01", "pci_0000_03_00_0", timing=FAST).changed
    assert m.mutating() == []


def test_attach_on_running_vm_is_a_precondition_error(lab, conn, mark) -> None:
    ops.pin_vm(conn, "cad-02", "gpu-02", timing=FAST)   # already pinned there: a no-op
    m = mark()
    with pytest.raises(ops.PreconditionFailed, match="Cannot add Host devices") as info:
        ops.attach_host_device(conn, "cad-02", "pci_0000_03_00_0", timing=FAST)
    assert info.value.code == 409
    assert len(m.mutating()) == 1
    assert hostdevs(conn, "cad-02") == {}


def test_attach_unknown_device_is_refused(lab, conn) -> None:
    with pytest.raises(ops.EngineRefused, match="not found") as info:
        ops.attach_host_device(conn, "cad-01", "pci_0000_ff_00_0", timing=FAST)
    assert info.value.code == 400


def test_mediated_devices_add_update_remove(lab, conn, mark) -> None:
    added = ops.add_mediated_device(conn, "render-01", "nvidia-18", nodisplay=False,
                                    driver_params="enable_uvm=1", instances=1, timing=FAST)
    assert added.changed and added.id
    assert mdevs(conn, "render-01") == {added.id: {
        "mdevType": "nvidia-18", "nodisplay": "false", "driverParams": "enable_uvm=1"}}

    m = mark()
    assert not ops.add_mediated_device(conn, "render-01", "nvidia-18", driver_params="enable_uvm=1",
                                       instances=1, timing=FAST).changed
    assert m.mutating() == []

    second = ops.add_mediated_device(conn, "render-01", "nvidia-18", driver_params="enable_uvm=1",
                                     instances=2, timing=FAST)
    assert second.changed and second.id != added.id

    # The engine replaces the whole map on update: every key is sent, a None drops driverParams.
    updated = ops.update_mediated_device(conn, "render-01", added.id, "nvidia-18", nodisplay=True,
                                         driver_params=None, timing=FAST)
    assert mdevs(conn, "render-01")[added.id] == {"mdevType": "nvidia-18", "nodisplay": "true"}
    # the step's message reads as the plan does, not as a Python dict
    assert updated.summary == (f"mediated device {added.id}: mdevType=nvidia-18 nodisplay=false "
                               "driverParams=enable_uvm=1 -> mdevType=nvidia-18 nodisplay=true")
    m = mark()
    assert not ops.update_mediated_device(conn, "render-01", added.id, "nvidia-18",
                                          nodisplay=True, timing=FAST).changed
    assert m.mutating() == []

    assert ops.remove_mediated_device(conn, "render-01", added.id, timing=FAST).changed
    assert list(mdevs(conn, "render-01")) == [second.id]
    m = mark()
    assert not ops.remove_mediated_device(conn, "render-01", added.id, timing=FAST).changed
    assert m.mutating() == []


def test_update_of_missing_mediated_device_is_not_found(lab, conn) -> None:
    with pytest.raises(ops.NotFoundOnEngine):
        ops.update_mediated_device(conn, "render-01", "0b6a1a2e-8a4c-4c53-9a43-5b5b2b7e8f00",
                                   "nvidia-18", timing=FAST)


def test_add_vnc_console(lab, conn, mark) -> None:
    assert ops.add_vnc_console(conn, "render-01", timing=FAST).changed
    protocols = {c.protocol for c in vm_service(conn, "render-01").graphics_consoles_service()
                 .list()}
    assert sdk.types.GraphicsType.VNC in protocols
    m = mark()
    assert not ops.add_vnc_console(conn, "render-01", timing=FAST).changed
    assert m.mutating() == []


def test_start_and_shutdown_vm(lab, conn, mark) -> None:
    assert ops.start_vm(conn, "plain-01", timeout=10, timing=FAST).changed
    assert vm(conn, "plain-01").status == sdk.types.VmStatus.UP
    m = mark()
    assert not ops.start_vm(conn, "plain-01", timeout=10, timing=FAST).changed
    assert m.mutating() == []

    out = ops.shutdown_vm(conn, "plain-01", timeout=10, timing=FAST)
    assert out.changed and "shutdown" in out.summary
    assert vm(conn, "plain-01").status == sdk.types.VmStatus.DOWN
    m = mark()
    assert not ops.shutdown_vm(conn, "plain-01", timeout=10, timing=FAST).changed
    assert m.mutating() == []


def test_shutdown_falls_back_to_stop(start_lab, connect) -> None:
    from .conftest import RequestMark
    lab = start_lab(time_scale=1.0)   # a guest shutdown takes 8 s here: longer than we wait
    conn = connect(lab)
    m = RequestMark(lab)
    out = ops.shutdown_vm(conn, "web-01", timeout=0, timing=FAST)
    assert "forced stop" in out.summary
    assert vm(conn, "web-01").status == sdk.types.VmStatus.DOWN
    assert [r.path.rsplit("/", 1)[-1] for r in m.mutating()] == ["shutdown", "stop"]


def test_correlation_id_reaches_engine_events(lab, conn) -> None:
    ops.set_vgpu_placement(conn, "gpu-01", "separated", correlation_id="apply-42", timing=FAST)
    events = conn.system_service().events_service().list(search="correlation_id=apply-42")
    assert events and all(e.correlation_id == "apply-42" for e in events)


def test_stale_cached_id_is_looked_up_again(lab, conn) -> None:
    # As if the VM had been re-created under its name since the id was cached.
    conn.id_cache[("vm", "render-01")] = "00000000-0000-0000-0000-000000000000"
    assert ops.add_vnc_console(conn, "render-01", timing=FAST).changed
    assert conn.id_cache[("vm", "render-01")] == vm(conn, "render-01").id


def test_unknown_id_is_not_found(lab, conn) -> None:
    with pytest.raises(ops.NotFoundOnEngine, match="no vm with id"):
        ops.add_vnc_console(conn, "00000000-0000-0000-0000-000000000000", timing=FAST)
