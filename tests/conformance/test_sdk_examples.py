"""The SDK's published examples (python-ovirt-engine-sdk4 `examples/`) that touch what the lab
models, as our own tests: each makes the calls its example makes, in the same order, against the
lab, and checks what the example relies on. Polling examples sleep 5 s between reads; here the
lab's clock runs fast, so they poll more often (tests.support.waiting).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import ovirtsdk4 as sdk
import pytest
from ovirtsdk4 import types

from reconciler_lab.fleet import LabCluster, load_fleet
from reconciler_lab.server import LabServer
from tests.conformance.conftest import start_lab
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    # The demo fleet plus a second Intel cluster, so a host can change cluster and come back Up.
    demo = load_fleet("demo")
    fleet = dataclasses.replace(demo, clusters=demo.clusters + (
        LabCluster("gpu-intel-b", "Intel Cascadelake Server Family"),))
    server = start_lab(fleet, tmp_path_factory.mktemp("examples-lab"))
    try:
        yield server
    finally:
        server.stop()


T = TypeVar("T")


def _until(read: Callable[[], T], done: Callable[[T], bool]) -> T:
    """The examples' `while True: sleep(5); x = service.get(); if ...: break`, as a bounded wait."""
    box: list[T] = []

    def check() -> bool:
        box[:] = [read()]
        return done(box[0])
    wait_for(check, what="the example's condition")
    return box[0]


def test_test_connection(connection: sdk.Connection) -> None:
    assert connection.test(raise_exception=False)


def test_connection_without_login_gets_401(lab: LabServer) -> None:
    # What the SDK does with a token it was given: no SSO call, a 401 becomes AuthError.
    conn = sdk.Connection(url=lab.url, token="not-a-token", ca_file=str(lab.ca_file))
    try:
        with pytest.raises(sdk.AuthError):
            conn.system_service().get()
    finally:
        conn.close(logout=False)


def test_show_summary(connection: sdk.Connection, lab: LabServer) -> None:
    api = connection.system_service().get()
    assert api.product_info.version.full_version.startswith(lab.fleet.engine_version)
    assert api.summary.hosts.total == 4
    assert api.summary.storage_domains.total == 0
    assert api.summary.users.total >= 1
    assert api.summary.vms.total == 6


def test_list_vms(connection: sdk.Connection) -> None:
    vms = connection.system_service().vms_service().list()
    assert sorted(vm.name for vm in vms) == ["cad-01", "ml-01", "vdi-01", "vdi-02", "vdi-03",
                                             "web-01"]
    assert all(vm.id for vm in vms)


def test_search_vms(connection: sdk.Connection) -> None:
    vms = connection.system_service().vms_service().list(search="name=VDI-01",
                                                        case_sensitive=False)
    assert [vm.name for vm in vms] == ["vdi-01"]
    assert connection.system_service().vms_service().list(search="name=VDI-01") == []


def test_page_vms(connection: sdk.Connection) -> None:
    vms_service = connection.system_service().vms_service()
    size, index, seen = 1, 1, list[str]()
    while True:
        page = vms_service.list(search="page %d" % index, max=size)
        if len(page) == 0:
            break
        seen.extend(vm.name for vm in page)
        index += 1
    assert sorted(seen) == sorted(vm.name for vm in vms_service.list())
    assert len(seen) == len(set(seen)) == 6


def test_follow_vm_links(connection: sdk.Connection) -> None:
    vms_service = connection.system_service().vms_service()
    vm = vms_service.list(search="name=vdi-01")[0]
    cluster = connection.follow_link(vm.cluster)
    template = connection.follow_link(vm.template)
    permissions = connection.follow_link(vm.permissions)
    assert cluster.name == "gpu-intel"
    assert template.name == "Blank"
    assert list(permissions) == []


def test_list_host_statistics(connection: sdk.Connection) -> None:
    hosts_service = connection.system_service().hosts_service()
    host = hosts_service.list(search="name=m60-01")[0]
    stats = connection.follow_link(host.statistics)
    for stat in stats:
        assert stat.values[0].datum is not None


def test_add_vnc_console(connection: sdk.Connection) -> None:
    vms_service = connection.system_service().vms_service()
    vm = vms_service.list(search="name=vdi-03")[0]      # SPICE only
    vm_service = vms_service.vm_service(vm.id)
    consoles_service = vm_service.graphics_consoles_service()
    consoles = consoles_service.list()
    console = next((c for c in consoles if c.protocol == types.GraphicsType.VNC), None)
    assert console is None
    consoles_service.add(console=types.GraphicsConsole(protocol=types.GraphicsType.VNC))
    assert sorted(str(c.protocol) for c in consoles_service.list()) == ["spice", "vnc"]


def test_pin_vm_then_start_and_stop(connection: sdk.Connection) -> None:
    # pin_vm.py, start_vm.py, stop_vm.py one after the other on one VM.
    system_service = connection.system_service()
    vms_service = system_service.vms_service()
    vm = vms_service.list(search="name=vdi-02")[0]
    vm_service = vms_service.vm_service(vm.id)
    vm_service.update(vm=types.Vm(placement_policy=types.VmPlacementPolicy(
        hosts=[types.Host(name="m60-01")])))
    pinned = vm_service.get().placement_policy.hosts
    assert [connection.follow_link(h).name for h in pinned] == ["m60-01"]

    vm = vms_service.list(search="name=vdi-02")[0]
    vm_service = vms_service.vm_service(vm.id)
    vm_service.start()
    up = _until(vm_service.get, lambda v: v.status == types.VmStatus.UP)
    assert connection.follow_link(up.host).name == "m60-01" 

    vm = vms_service.list(search="name=vdi-02")[0]
    vm_service = vms_service.vm_service(vm.id)
    vm_service.stop()
    _until(vm_service.get, lambda v: v.status == types.VmStatus.DOWN)


def test_poll_events(connection: sdk.Connection) -> None:
    events_service = connection.system_service().events_service()
    events = events_service.list(max=1)
    assert len(events) == 1
    index = int(events[0].id)
    # Something happens, then the example's loop reads what is new since the stored index.
    vms_service = connection.system_service().vms_service()
    vm = vms_service.list(search="name=cad-01")[0]
    vms_service.vm_service(vm.id).update(types.Vm(description="polled"))
    new = events_service.list(from_=index)
    assert [e.code for e in new] == [35]
    assert all(int(e.id) > index for e in new)
    assert events_service.list(from_=int(new[0].id)) == []


def test_set_vm_serial_number_is_refused(connection: sdk.Connection, lab: LabServer) -> None:
    # The lab does not model serial numbers: the example's update must fail, not pass unapplied.
    vms_service = connection.system_service().vms_service()
    vm = vms_service.list(search="name=cad-01")[0]
    vm_service = vms_service.vm_service(vm.id)
    events = len(lab.engine.events)   # type: ignore[union-attr]
    with pytest.raises(sdk.Error) as err:
        vm_service.update(types.Vm(serial_number=types.SerialNumber(
            policy=types.SerialNumberPolicy.CUSTOM, value="myserial")))
    assert err.value.code == 400 and "serial_number" in str(err.value)
    assert len(lab.engine.events) == events   # type: ignore[union-attr]


def test_upgrade_host(connection: sdk.Connection) -> None:
    hosts_service = connection.system_service().hosts_service()
    events_service = connection.system_service().events_service()
    host = hosts_service.list(search="name=m60-01")[0]
    host_service = hosts_service.host_service(host.id)
    assert not host.update_available
    host_service.upgrade_check()
    last_event = events_service.list(max=1)[0]
    codes = [event.code for event in events_service.list(
        from_=int(last_event.id) - 2, search="host.name=%s" % host.name)]
    assert 885 in codes and 839 not in codes and 887 not in codes
    host = host_service.get()
    assert not host.update_available
    with pytest.raises(sdk.Error) as err:    # what upgrade() answers with nothing to install
        host_service.upgrade()
    assert err.value.code == 409


def test_change_host_cluster(connection: sdk.Connection) -> None:
    hosts_service = connection.system_service().hosts_service()
    host = hosts_service.list(search="name=m60-02")[0]
    host_service = hosts_service.host_service(host.id)
    if host.status != types.HostStatus.MAINTENANCE:
        host_service.deactivate()
        _until(host_service.get, lambda h: h.status == types.HostStatus.MAINTENANCE)
    host_service.update(types.Host(cluster=types.Cluster(name="gpu-intel-b")))
    host_service.activate()
    host = _until(host_service.get, lambda h: h.status == types.HostStatus.UP)
    assert connection.follow_link(host.cluster).name == "gpu-intel-b"
    assert [h.name for h in hosts_service.list(search="cluster=gpu-intel-b")] == ["m60-02"]


def test_change_host_cluster_across_cpu_vendors(connection: sdk.Connection) -> None:
    # The same calls moving an Intel host into the AMD cluster: the engine takes the move, and
    # activation leaves the host Non Operational (its CPU lacks the cluster's svm).
    hosts_service = connection.system_service().hosts_service()
    host = hosts_service.list(search="name=t4-01")[0]
    host_service = hosts_service.host_service(host.id)
    with pytest.raises(sdk.Error) as err:    # not while it is Up
        host_service.update(types.Host(cluster=types.Cluster(name="gpu-amd")))
    assert err.value.code == 409
    host_service.deactivate()
    _until(host_service.get, lambda h: h.status == types.HostStatus.MAINTENANCE)
    host_service.update(types.Host(cluster=types.Cluster(name="gpu-amd")))
    host_service.activate()
    host = _until(host_service.get, lambda h: h.status != types.HostStatus.INITIALIZING)
    assert host.status == types.HostStatus.NON_OPERATIONAL
    assert host.status_detail == "cpu_type_incompatible_with_cluster"


def test_asynchronous_inventory(lab: LabServer, tmp_path: Path) -> None:
    # The first half of asynchronous_inventory.py: several lists at once over 10 connections;
    # storage domains, networks and disks are collections the lab does not serve (404).
    connection = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                                ca_file=str(lab.ca_file), connections=10, pipeline=0)
    try:
        system_service = connection.system_service()
        futures: dict[str, Any] = {
            "dcs": system_service.data_centers_service().list(wait=False),
            "clusters": system_service.clusters_service().list(wait=False),
            "hosts": system_service.hosts_service().list(wait=False),
            "vms": system_service.vms_service().list(wait=False),
        }
        got = {k: f.wait() for k, f in futures.items()}
        assert [dc.name for dc in got["dcs"]] == ["Default"]
        assert len(got["clusters"]) == 3 and len(got["hosts"]) == 4 and len(got["vms"]) == 6
        with pytest.raises(sdk.NotFoundError):
            system_service.storage_domains_service().list(wait=False).wait()
    finally:
        connection.close()
