"""The bulk lists parsed by bulk_read give exactly the facts of the SDK's own readers."""
from __future__ import annotations

import gc
import io
import xml.etree.ElementTree as ET

import ovirtsdk4
import pytest
from ovirtsdk4 import types
from ovirtsdk4.readers import VmReader
from ovirtsdk4.xml import XmlReader

from reconciler.observe import engine
from reconciler.observe.bulk_read import (ListStream, PendingList, collector_paused, elements,
                                         fetch_xml)

from .conftest import api_requests

pytestmark = pytest.mark.lab


def _ids(ident: str) -> str:
    return ident


def _both_ways(lab, conn):
    system = conn.system_service()
    clusters = {c.id: engine.cluster_fact(c) for c in system.clusters_service().list()}
    sdk_hosts = [engine.host_fact(h, clusters, _ids)
                 for h in system.hosts_service().list(follow=engine.HOST_FOLLOW)]
    sdk_vms = [engine.vm_fact(v, clusters, _ids)
               for v in system.vms_service().list(follow=engine.VM_FOLLOW)]
    before = len(api_requests(lab))
    body = fetch_xml(conn, system.hosts_service(), "/hosts", {"follow": engine.HOST_FOLLOW})
    shared: dict = {}
    lean_hosts = [engine.host_fact_from_element(e, clusters, _ids, shared)
                  for e in elements(body)]
    pending = PendingList(conn, system.vms_service(), "/vms",
                          {"follow": engine.VM_FOLLOW, "search": None},
                          lambda e: engine.vm_read_from_element(e, clusters))
    lean_vms = [engine.vm_from_read(v, _ids) for v in pending.collect()]
    sent = api_requests(lab)[before:]
    return sdk_hosts, sdk_vms, lean_hosts, lean_vms, sent


def test_demo_fleet_facts_equal_the_sdk_readers(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.load_fleet("demo"))
    conn = lab_connect(lab)
    vms = conn.system_service().vms_service()
    cad = vms.list(search="name=cad-01")[0]
    # the Quadro's HDMI audio function comes along as a placeholder (same IOMMU group)
    vms.vm_service(cad.id).host_devices_service().add(types.HostDevice(name="pci_0000_41_00_0"))
    sdk_hosts, sdk_vms, lean_hosts, lean_vms, sent = _both_ways(lab, conn)
    assert lean_hosts == sdk_hosts and lean_vms == sdk_vms
    assert any(d.placeholder for v in lean_vms for d in v.host_devices)
    assert any(v.mediated_devices for v in lean_vms) and any(v.pinned_hosts for v in lean_vms)
    assert any(d.mdev_types for h in lean_hosts for d in h.devices)
    assert [(r.method, r.path, r.query) for r in sent] == [
        ("GET", "/ovirt-engine/api/hosts", "follow=devices"),
        ("GET", "/ovirt-engine/api/vms",
         "follow=host_devices%2Cmediated_devices%2Cgraphics_consoles")]


def test_generated_fleet_facts_equal_the_sdk_readers(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.generate_fleet(30, 4, 300, seed=3))
    sdk_hosts, sdk_vms, lean_hosts, lean_vms, _ = _both_ways(lab, lab_connect(lab))
    assert len(lean_hosts) == 30 and len(lean_vms) == 300
    assert lean_hosts == sdk_hosts and lean_vms == sdk_vms


def test_a_vm_element_gives_the_sdk_readers_fact_in_edge_cases() -> None:
    """What the lab never writes: members missing, empty or unnamed, a device known by its href."""
    body = (b"<vms><vm id='v1'><name>a</name><status></status><cluster id='c9'/>"
            b"<placement_policy><hosts><host id='h1'/><host/></hosts></placement_policy>"
            b"<custom_properties><custom_property><name>mdev_type</name><value></value>"
            b"</custom_property><custom_property><name>mdev_type</name><value>nvidia-1</value>"
            b"</custom_property></custom_properties>"
            b"<graphics_consoles><graphics_console id='g'/></graphics_consoles>"
            b"<host_devices><host_device id='7063695f30' href='/ovirt-engine/api/hosts/h2/"
            b"devices/x'><placeholder>TRUE</placeholder></host_device></host_devices>"
            b"<mediated_devices><vm_mediated_device id='m1'><spec_params><property>"
            b"<value>x</value></property><property><name>nodisplay</name><value>True</value>"
            b"</property></spec_params></vm_mediated_device></mediated_devices>"
            b"<link rel='nics' href='/x'/></vm><vm id='v2'><name>b</name><cluster/></vm></vms>")
    lean = [engine.vm_from_read(engine.vm_read_from_element(e, {}), str.upper)
            for e in elements(body)]
    sdk = [engine.vm_fact(v, {}, str.upper) for v in VmReader.read_many(XmlReader(io.BytesIO(body)))]
    assert lean == sdk
    first, second = lean
    assert (first.cluster, first.status, first.pinned_hosts, first.affinity) == \
        ("c9", "unknown", ("H1",), None)
    assert first.legacy_mdev_property == "nvidia-1"
    assert [(g.id, g.protocol) for g in first.graphics] == [("g", "")]
    assert [(d.name, d.host, d.placeholder) for d in first.host_devices] == [("pci_0", "H2", True)]
    assert [(m.id, m.mdev_type, m.nodisplay) for m in first.mediated_devices] == \
        [("m1", "", True)]
    assert (second.cluster, second.host, second.pinned_hosts, second.host_devices) == \
        (None, None, (), ())


def test_only_top_level_elements_are_handed_over() -> None:
    body = (b"<hosts><host id='h1'><devices><host_device><host id='h1'/></host_device>"
            b"</devices></host><host id='h2'/></hosts>")
    assert [e.get("id") for e in elements(body)] == ["h1", "h2"]


_LIST = (b"<?xml version='1.0' encoding='UTF-8' standalone='yes'?>\n<hosts>"
         b"<host id='h1'><name>a</name><devices><host_device id='d1'><host id='h1'/></host_device>"
         b"<host_device id='d2'/></devices></host><host id='h2'/>"
         b"<host id='h3'><name>&lt;c&gt; \xc3\xa9</name></host></hosts>")


def _streamed(body: bytes, size: int) -> list:
    seen = []
    stream = ListStream(lambda e: seen.append((e.get("id"), e.findtext("name"),
                                               len(e.findall("devices/host_device")))))
    for at in range(0, len(body), size):
        stream.feed(body[at:at + size])
    stream.close()
    return seen


@pytest.mark.parametrize("size", [1, 2, 5, 64, len(_LIST)])
def test_a_list_gives_the_same_complete_elements_whatever_pieces_it_arrives_in(size: int) -> None:
    assert _streamed(_LIST, size) == [("h1", "a", 2), ("h2", None, 0), ("h3", "<c> \u00e9", 0)]


def test_elements_are_released_as_they_are_handed_over() -> None:
    body = b"<vms>" + b"".join(b"<vm id='%d'><name>v</name></vm>" % i for i in range(500)) \
        + b"</vms>"
    held = []
    stream = ListStream(lambda e: held.append(len(stream._list)))   # noqa: SLF001
    for at in range(0, len(body), 100):
        stream.feed(body[at:at + 100])
    stream.close()
    assert len(held) == 500 and max(held) <= 5      # never more than a piece's worth built


def test_an_empty_list_has_no_elements_and_a_cut_short_one_fails() -> None:
    assert _streamed(b"<vms/>", 2) == [] and _streamed(b"<vms></vms>", 3) == []
    with pytest.raises(ET.ParseError):
        _streamed(b"<vms><vm id='1'/><vm id='2'><name>", 4)


def test_a_pending_list_is_parsed_as_it_arrives_and_counted(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.load_fleet("demo"))
    conn = lab_connect(lab)
    hosts = conn.system_service().hosts_service()
    before = conn.bytes_received
    body = fetch_xml(conn, hosts, "/hosts", {"follow": engine.HOST_FOLLOW})
    buffered = conn.bytes_received - before
    ids = PendingList(conn, hosts, "/hosts", {"follow": engine.HOST_FOLLOW},
                      lambda e: e.get("id")).collect()
    assert ids == [e.get("id") for e in elements(body)] and len(ids) > 1
    assert conn.bytes_received - before - buffered == buffered == len(body)


def test_a_list_answered_after_a_new_login_is_read_from_the_sdks_buffer(start_lab, lab_connect,
                                                                        fleets):
    from reconciler_lab.faults import FaultConfig
    from tests.support.clock import ManualClock

    clock = ManualClock()
    lab = start_lab(fleets.load_fleet("demo"), faults=FaultConfig(token_ttl=30), clock=clock)
    conn = lab_connect(lab)
    hosts = conn.system_service().hosts_service()
    first = PendingList(conn, hosts, "/hosts", {}, lambda e: e.get("id")).collect()
    clock.advance(31)                 # the token expires: 401, the SDK logs in and asks again
    assert PendingList(conn, hosts, "/hosts", {}, lambda e: e.get("id")).collect() == first
    assert [r.status for r in api_requests(lab)][-2:] == [401, 200]


def test_a_pending_lists_fault_is_the_sdks_error(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.load_fleet("demo"))
    conn = lab_connect(lab)
    hosts = conn.system_service().hosts_service()
    with pytest.raises(ovirtsdk4.Error) as caught:
        PendingList(conn, hosts, "/hosts", {"search": "bogus~~field"}, lambda e: e).collect()
    assert getattr(caught.value, "code", None) == 400


def test_a_failure_while_parsing_is_raised_once_the_answer_is_in(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.load_fleet("demo"))
    conn = lab_connect(lab)
    hosts = conn.system_service().hosts_service()

    def take(element: ET.Element) -> None:
        raise ValueError("cannot convert")

    with pytest.raises(ValueError, match="cannot convert"):
        PendingList(conn, hosts, "/hosts", {}, take).collect()
    # the transfer was read to its end: the connection goes on as before
    assert len(PendingList(conn, hosts, "/hosts", {}, lambda e: e).collect()) > 1


def test_identical_vgpu_types_share_one_fact(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.load_fleet("demo"))
    conn = lab_connect(lab)
    body = fetch_xml(conn, conn.system_service().hosts_service(), "/hosts",
                     {"follow": engine.HOST_FOLLOW})
    shared: dict = {}
    hosts = [engine.host_fact_from_element(e, {}, _ids, shared) for e in elements(body)]
    types = [m for h in hosts for d in h.devices for m in d.mdev_types]
    assert len(types) > len(shared) > 0
    assert {id(m) for m in types} == {id(m) for m in shared.values()}


def test_faults_are_the_sdks_errors(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.load_fleet("demo"))
    conn = lab_connect(lab)
    hosts = conn.system_service().hosts_service()
    with pytest.raises(ovirtsdk4.NotFoundError):
        fetch_xml(conn, hosts, "/hosts/no-such-host/devices", {})
    with pytest.raises(ovirtsdk4.Error) as caught:
        fetch_xml(conn, hosts, "/hosts", {"search": "bogus~~field"})
    assert getattr(caught.value, "code", None) == 400


def test_collector_is_paused_and_restored_as_it_was() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failure inside still restores the collector")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()        # it was off before: stays off
    finally:
        gc.enable()


def test_what_a_freezing_pause_made_is_frozen_until_the_next_one_collects_it() -> None:
    gc.unfreeze()
    try:
        with collector_paused(freeze=True):
            made = [[n] for n in range(1000)]
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
        frozen = gc.get_freeze_count()
        with collector_paused():
            more = [[n] for n in range(1000)]
        # a plain pause (the device poll's) neither collects what is frozen nor freezes more
        assert gc.isenabled() and gc.get_freeze_count() == frozen and len(more) == 1000
        with collector_paused(freeze=True):
            assert gc.get_freeze_count() == 0      # unfrozen (and collected) as the next begins
        gc.disable()
        gc.unfreeze()
        with collector_paused(freeze=True):
            pass
        assert gc.get_freeze_count() == 0          # off before: nothing frozen either
    finally:
        gc.enable()
        gc.unfreeze()


def test_an_engine_read_leaves_its_facts_frozen(start_lab, lab_connect, fleets):
    lab = start_lab(fleets.load_fleet("demo"))
    conn = lab_connect(lab)
    gc.unfreeze()
    try:
        read = engine.read_engine(conn)
        assert read.hosts and read.vms and gc.isenabled()
        # the facts (and what they hold) are out of the collections that follow
        assert gc.get_freeze_count() >= len(read.hosts) + len(read.vms)
    finally:
        gc.unfreeze()
