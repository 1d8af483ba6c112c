"""The lab answers as the engine does on the wire: document form, element order, dead links,
strict updates, search and follow (see docs/lab.md, "Conformance")."""
from __future__ import annotations

import dataclasses
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree as ET

import ovirtsdk4 as sdk
import pytest
from ovirtsdk4 import types

from reconciler_lab.fleet import LabVm, load_fleet
from reconciler_lab.server import LabServer

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    with LabServer("demo", tmp_path_factory.mktemp("surface"), time_scale=0.01) as server:
        yield server


@pytest.fixture(scope="module")
def conn(lab: LabServer) -> Iterator[sdk.Connection]:
    c = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                       ca_file=str(lab.ca_file))
    yield c
    c.close()


def raw(lab: LabServer, conn: sdk.Connection, method: str, path: str,
        body: str | None = None) -> tuple[int, str]:
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    req = urllib.request.Request(lab.url + path, method=method,
                                 data=body.encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {conn.authenticate()}",
                                          "Content-Type": "application/xml"})
    try:
        with urllib.request.urlopen(req, context=ctx) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def tags(xml: str) -> list[str]:
    return [child.tag for child in ET.fromstring(xml)]


def test_document_form(lab: LabServer, conn: sdk.Connection) -> None:
    status, body = raw(lab, conn, "GET", "/events?max=1")
    assert status == 200
    assert body.startswith('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n')
    # JAXB dates: milliseconds and Z
    assert re.search(r"<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z</time>", body)
    status, body = raw(lab, conn, "GET", "/vms/no-such-vm")
    assert (status, body) == (404, "")
    status, body = raw(lab, conn, "GET", "/nothing-here")
    assert (status, body) == (404, "")
    status, body = raw(lab, conn, "POST", "/vms?search=x", "<vm/>")
    assert status == 405
    # The generated schema sorts Fault's members: detail, then reason.
    status, body = raw(lab, conn, "GET", "/hosts?search=nonsense")
    assert status == 400 and tags(body) == ["detail", "reason"]


def test_element_order(lab: LabServer, conn: sdk.Connection) -> None:
    vm = conn.system_service().vms_service().list(search="name=vdi-01")[0]
    _, body = raw(lab, conn, "GET", f"/vms/{vm.id}?follow=graphics_consoles,host_devices")
    order = tags(body)
    assert order[:4] == ["actions", "name", "description", "comment"]
    assert order[4] == "link" and order.index("bios") > max(
        i for i, t in enumerate(order) if t == "link")
    # VmBase's members (cpu, type, cluster) come before Vm's (status, host, template).
    assert order.index("type") < order.index("cluster") < order.index("status") \
        < order.index("graphics_consoles") < order.index("host") < order.index("host_devices") \
        < order.index("template")
    host = conn.system_service().hosts_service().list(search="name=m60-01")[0]
    _, body = raw(lab, conn, "GET", f"/hosts/{host.id}?follow=devices")
    order = tags(body)
    assert order[:3] == ["actions", "name", "comment"]
    assert order[-2:] == ["cluster", "devices"]
    device = ET.fromstring(body).find("devices/host_device")
    assert device is not None and [c.tag for c in device][0] == "name"


def test_every_listed_link_and_action_answers(lab: LabServer, conn: sdk.Connection) -> None:
    s = conn.system_service()
    hrefs: list[str] = []
    for path in ("", f"/hosts/{s.hosts_service().list()[0].id}",
                 f"/vms/{s.vms_service().list()[0].id}",
                 f"/clusters/{s.clusters_service().list()[0].id}",
                 f"/datacenters/{s.data_centers_service().list()[0].id}",
                 "/templates/00000000-0000-0000-0000-000000000000"):
        _, body = raw(lab, conn, "GET", path)
        root = ET.fromstring(body)
        hrefs += [link.get("href") or "" for link in root.findall("link")]
        hrefs += [e.get("href") or "" for e in root.iter() if e.get("href") and e is not root
                  and e.tag != "link"]
        for action in root.findall("actions/link"):
            status, _ = raw(lab, conn, "POST", (action.get("href") or "")[len("/ovirt-engine/api"):],
                            "<action/>")
            assert status != 404, action.get("href")
    dead = []
    for href in hrefs:
        status, _ = raw(lab, conn, "GET", href[len("/ovirt-engine/api"):])
        if status != 200:
            dead.append((href, status))
    assert not dead


def test_strict_updates(lab: LabServer, conn: sdk.Connection) -> None:
    vms = conn.system_service().vms_service()
    vm = vms.list(search="name=cad-01")[0]
    svc = vms.vm_service(vm.id)
    assert lab.engine is not None
    events = len(lab.engine.events)
    for change, member in ((types.Vm(memory=8 * 2**30), "memory"),
                           (types.Vm(serial_number=types.SerialNumber(value="x")),
                            "serial_number.value"),
                           (types.Vm(cpu=types.Cpu(topology=types.CpuTopology(sockets=4))),
                            "cpu.topology.sockets")):
        with pytest.raises(sdk.Error) as err:
            svc.update(change)
        assert err.value.code == 400 and member in str(err.value)
    assert len(lab.engine.events) == events
    with pytest.raises(sdk.Error) as err:
        svc.update(types.Vm(id="another"))
    assert err.value.code == 409 and "immutable field: id" in str(err.value)
    # Read-only members are ignored, as the engine ignores them; modelled ones applied.
    updated = svc.update(types.Vm(description="GPU CAD", comment="c",
                                  status=types.VmStatus.UP, memory=vm.memory, name=vm.name))
    assert (updated.description, updated.comment, str(updated.status)) == ("GPU CAD", "c", "down")
    with pytest.raises(sdk.Error) as err:
        svc.update(types.Vm(custom_properties=[types.CustomProperty(name="nosuch", value="1")]))
    assert err.value.code == 400 and "nosuch" in str(err.value)
    svc.update(types.Vm(custom_properties=[types.CustomProperty(name="hugepages", value="1048576")]))
    assert [(p.name, p.value) for p in svc.get().custom_properties] == [("hugepages", "1048576")]

    hosts = conn.system_service().hosts_service()
    host = hosts.list(search="name=amd-01")[0]
    hsvc = hosts.host_service(host.id)
    with pytest.raises(sdk.Error) as err:
        hsvc.update(types.Host(address="elsewhere.example"))
    assert err.value.code == 400 and "address" in str(err.value)
    assert hsvc.update(types.Host(comment="rack 4")).comment == "rack 4"
    with pytest.raises(sdk.Error) as err:       # cluster changes need maintenance
        hsvc.update(types.Host(cluster=types.Cluster(name="gpu-intel")))
    assert err.value.code == 409


def test_search(conn: sdk.Connection) -> None:
    s = conn.system_service()
    assert [c.name for c in s.clusters_service().list(search="name=gpu-amd")] == ["gpu-amd"]
    assert [c.name for c in s.clusters_service().list(search="datacenter=Default sortby name")] \
        == ["gpu-amd", "gpu-intel"]
    vms = s.vms_service()
    assert [v.name for v in vms.list(search="cluster=gpu-intel sortby name desc page 2",
                                     max=2)] == ["vdi-02", "vdi-01"]
    assert [v.name for v in vms.list(search='host="m60-02" and status=up sortby name')] \
        == ["vdi-03", "web-01"]
    assert [h.name for h in s.hosts_service().list(search="name=m60* or name=amd* sortby name")] \
        == ["amd-01", "m60-01", "m60-02"]
    events = s.events_service()
    assert events.list(search="time > 2000-01-01T00:00:00Z and type=1")
    assert not events.list(search="time > 2999-01-01T00:00:00Z")
    assert [t.name for t in s.templates_service().list(search="vm.name=vdi-01")] == ["Blank"]
    assert s.templates_service().list(search="vm.name=nosuch") == []
    for bad in ("colour=red", "name=", "name=a sortby nosuch", "page 0", "status > up"):
        with pytest.raises(sdk.Error) as err:
            vms.list(search=bad)
        assert err.value.code == 400, bad


def test_follow_is_honoured_or_refused(conn: sdk.Connection) -> None:
    vms = conn.system_service().vms_service()
    vm = vms.list(search="name=ml-01", follow="host_devices")[0]
    assert [d.name for d in vm.host_devices] == ["pci_0000_e1_00_0"]
    for bad in ("host_devices.host", "nics", "disk_attachments.disk"):
        with pytest.raises(sdk.Error) as err:
            vms.list(follow=bad)
        assert err.value.code == 400, bad


@pytest.mark.parametrize("version,kept", [("4.4.10", True), ("4.5.6", False)])
def test_seeded_legacy_mdev_type(tmp_path: Path, version: str, kept: bool) -> None:
    demo = load_fleet("demo")
    fleet = dataclasses.replace(demo, engine_version=version, vms=demo.vms + (
        LabVm("legacy-01", "gpu-intel", custom_properties=(("mdev_type", "nodisplay,nvidia-18,"
                                                                          "nvidia-18"),)),))
    with LabServer(fleet, tmp_path, time_scale=0.01) as lab:
        c = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                           ca_file=str(lab.ca_file))
        try:
            vm = c.system_service().vms_service().list(search="name=legacy-01",
                                                       follow="mediated_devices")[0]
        finally:
            c.close()
    props = [(p.name, p.value) for p in vm.custom_properties or []]
    mdevs = sorted(tuple(sorted((p.name, p.value) for p in m.spec_params))
                   for m in vm.mediated_devices)
    if kept:
        assert props == [("mdev_type", "nodisplay,nvidia-18,nvidia-18")] and mdevs == []
    else:
        # the 4.5 database upgrade: one device per type, nodisplay from the leading token
        assert props == []
        assert mdevs == [(("mdevType", "nvidia-18"), ("nodisplay", "true"))] * 2
