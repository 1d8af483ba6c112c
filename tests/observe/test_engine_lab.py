"""The engine reader against the lab engine, through the real SDK over HTTPS."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.engine.client import check_connection, connect
from reconciler.engine.errors import EngineRefused, EngineUnavailable
from reconciler.engine.retry import Backoff, Timing
from reconciler.errors import EngineError
from reconciler.observe.engine import read_engine
from reconciler.observe.vendor import derive_vendor
from reconciler.spec.model import (DesiredState, EngineSpec, HostProfile, HostSelector,
                                   PassthroughSpec, VgpuSpec, VmSpec)

from .conftest import api_requests
from tests.support.secrets import write_secret

pytestmark = pytest.mark.lab



def _quick(attempts: int) -> Timing:
    """Retries a few milliseconds apart: these tests count attempts, not wait for them."""
    return Timing(retry=Backoff(initial=0.001, cap=0.01), attempts=attempts)

def test_request_count_does_not_grow_with_the_fleet(start_lab, lab_connect, fleets):
    counts = []
    for hosts in (10, 500):
        lab = start_lab(fleets.generate_fleet(hosts, 2, hosts))
        conn = lab_connect(lab)
        before = len(api_requests(lab))
        read = read_engine(conn, None)
        sent = len(api_requests(lab)) - before
        assert len(read.hosts) == hosts
        assert sent == read.requests == conn.request_count
        assert all(r.method == "GET" for r in api_requests(lab))
        counts.append(sent)
    assert counts[0] == counts[1] == 3


def test_facts_match_the_demo_fleet(start_lab, lab_connect, fleets):
    fleet = fleets.load_fleet("demo")
    lab = start_lab(fleet)
    clusters, hosts, vms = read_engine(lab_connect(lab), None)

    lab_clusters = {c.name: c for c in fleet.clusters}
    assert {c.name for c in clusters} == set(lab_clusters)
    for c in clusters:
        assert c.cpu_type == lab_clusters[c.name].cpu_type
        assert c.architecture == lab_clusters[c.name].architecture

    by_name = {h.name: h for h in hosts}
    assert set(by_name) == {h.name for h in fleet.hosts}
    for lh in fleet.hosts:
        h = by_name[lh.name]
        lc = lab_clusters[lh.cluster]
        assert (h.cluster, h.status, h.cpu_type, h.cpu_name) == \
            (lh.cluster, lh.status, lh.cpu_type, lh.cpu_name)
        assert h.custom_kernel_cmdline == lh.custom_kernel_cmdline
        assert h.vgpu_placement == lh.vgpu_placement
        verdict = derive_vendor(lc.cpu_type, lc.architecture, lh.cpu_type, lh.cpu_name)
        assert (h.cpu_vendor, h.cpu_vendor_note) == (verdict.vendor, verdict.note)
        if lh.booted_custom_args:
            assert lh.booted_custom_args in (h.reported_kernel_cmdline or "")
        lab_devs = {d.name: d for d in lh.devices}
        got = {d.name: d for d in h.devices}
        assert set(lab_devs) <= set(got)
        for name, ld in lab_devs.items():
            d = got[name]
            assert (d.capability, d.iommu_group, d.driver, d.vendor_id, d.product_id,
                    d.parent, d.physical_function, d.virtual_functions) == \
                (ld.capability, ld.iommu_group, ld.driver, ld.vendor_id, ld.product_id,
                 ld.parent, ld.physical_function, ld.virtual_functions)
            assert d.vendor_name == ld.vendor_name and d.product_name == ld.product_name
            assert [(m.name, m.human_readable_name, m.max_instances) for m in d.mdev_types] == \
                sorted((m.name, m.human_readable_name, m.max_instances) for m in ld.mdev_types)
            for m in d.mdev_types:
                assert 0 <= m.available_instances <= (m.max_instances or 0)

    vm_by_name = {v.name: v for v in vms}
    assert set(vm_by_name) == {v.name for v in fleet.vms}
    for lv in fleet.vms:
        v = vm_by_name[lv.name]
        assert (v.cluster, v.status, v.host, v.pinned_hosts, v.affinity) == \
            (lv.cluster, lv.status, lv.host, lv.pinned_hosts, lv.affinity)
        assert sorted(g.protocol for g in v.graphics) == sorted(lv.graphics)
        assert sorted(d.name for d in v.host_devices if not d.placeholder) == \
            sorted(lv.host_devices)
        assert all(d.host == lv.pinned_hosts[0] for d in v.host_devices)
        assert sorted((m.mdev_type, m.nodisplay, m.driver_params) for m in v.mediated_devices) \
            == sorted((m.mdev_type, m.nodisplay, m.driver_params) for m in lv.mediated_devices)
        # the engine names the VM on a device only while that VM runs with it
        if v.status == "up":
            for d in v.host_devices:
                if not d.placeholder:
                    assert by_name[d.host].device(d.name).vm == v.name


def test_search_narrows_to_the_spec_clusters(start_lab, lab_connect, fleets):
    fleet = fleets.load_fleet("demo")
    lab = start_lab(fleet)
    cluster = fleet.clusters[0].name
    desired = DesiredState(engine=EngineSpec(lab_fleet="demo"),
                           host_profiles=(HostProfile("p", HostSelector(cluster=cluster)),))
    read = read_engine(lab_connect(lab), desired)
    assert {h.name for h in read.hosts} == {h.name for h in fleet.hosts if h.cluster == cluster}
    assert {v.name for v in read.vms} == {v.name for v in fleet.vms if v.cluster == cluster}
    assert read.requests <= 5


def test_spec_vms_outside_the_profile_clusters_get_their_hosts_read(start_lab, lab_connect,
                                                                    fleets):
    """A vGPU VM's candidate hosts and a passthrough VM's host are read even when no profile
    selects their cluster, with one more request (the planner would report them unknown)."""
    fleet = fleets.load_fleet("demo")
    lab = start_lab(fleet)
    cluster_of = {h.name: h.cluster for h in fleet.hosts}
    vgpu_vm = next(v for v in fleet.vms if v.mediated_devices)
    pt_vm = next(v for v in fleet.vms if v.pinned_hosts and v.host_devices)
    pt_host = pt_vm.pinned_hosts[0]
    vgpu_cluster = cluster_of[vgpu_vm.host or ""] if vgpu_vm.host else vgpu_vm.cluster
    assert vgpu_cluster != cluster_of[pt_host]          # the demo fleet's two clusters

    def profile(cluster: str) -> tuple[HostProfile, ...]:
        return (HostProfile("p", HostSelector(cluster=cluster)),)

    vgpu_spec = VmSpec(vgpu_vm.name, vgpu=VgpuSpec("nvidia-18"))
    pt_spec = VmSpec(pt_vm.name, passthrough=PassthroughSpec(pt_host, tuple(pt_vm.host_devices)))
    engine = EngineSpec(lab_fleet="demo")
    conn = lab_connect(lab)

    read = read_engine(conn, DesiredState(engine, host_profiles=profile(cluster_of[pt_host]),
                                          vms=(vgpu_spec,)))
    assert {h.name for h in read.hosts} == set(cluster_of)
    assert all(h.devices for h in read.hosts if cluster_of[h.name] == vgpu_cluster)
    assert read.requests == 4

    read = read_engine(conn, DesiredState(engine, host_profiles=profile(vgpu_cluster),
                                          vms=(pt_spec,)))
    assert pt_host in {h.name for h in read.hosts}
    assert next(h for h in read.hosts if h.name == pt_host).devices
    assert read.requests == 4

    # Spec VMs inside the profile clusters need no extra request.
    read = read_engine(conn, DesiredState(engine, host_profiles=profile(vgpu_cluster),
                                          vms=(vgpu_spec,)))
    assert read.requests == 3


def test_wrong_ca_is_refused_with_a_clear_error(start_lab, lab_connect, fleets, tmp_path):
    from reconciler_lab.tls import ensure_tls
    lab = start_lab(fleets.load_fleet("demo"))
    other_ca = ensure_tls(tmp_path / "other").ca_cert
    conn = lab_connect(lab, ca_file=other_ca)
    with pytest.raises(EngineRefused, match="TLS verification of the engine failed"):
        check_connection(conn)
    with pytest.raises(EngineError, match="does not exist"):
        lab_connect(lab, ca_file=tmp_path / "missing.pem")


def test_password_from_env_and_file(start_lab, fleets, tmp_path, monkeypatch):
    lab = start_lab(fleets.load_fleet("demo"))
    base = EngineSpec(url=lab.url, username=lab.username, ca_file=Path(lab.ca_file))
    monkeypatch.setenv("LAB_PW", lab.password)
    conn = connect(replace(base, password_env="LAB_PW"))
    check_connection(conn)
    assert len(read_engine(conn).hosts) > 0
    conn.close(logout=False)

    pw = tmp_path / "pw"
    write_secret(pw, lab.password + "\n")
    conn = connect(replace(base, password_file=pw))
    check_connection(conn)
    conn.close(logout=False)

    monkeypatch.delenv("LAB_PW")
    with pytest.raises(EngineError, match="LAB_PW"):
        connect(replace(base, password_env="LAB_PW"))
    with pytest.raises(EngineError, match="nope"):
        connect(replace(base, password_file=tmp_path / "nope"))
    monkeypatch.setenv("LAB_PW", "wrong-password")
    conn = connect(replace(base, password_env="LAB_PW"))
    with pytest.raises(EngineError, match="refused the credentials") as err:
        check_connection(conn)
    assert "wrong-password" not in str(err.value)


def test_retries_through_injected_server_errors(start_lab, lab_connect, fleets):
    from reconciler_lab.faults import FaultConfig
    fleet = fleets.load_fleet("demo")
    lab = start_lab(fleet, faults=FaultConfig(error_rate=0.4, seed=7))
    conn = lab_connect(lab)
    read = read_engine(conn, None,
                       timing=_quick(12))
    assert {h.name for h in read.hosts} == {h.name for h in fleet.hosts}
    statuses = [r.status for r in api_requests(lab)]
    assert any(s >= 500 for s in statuses)          # faults were injected ...
    assert statuses.count(200) == 3                  # ... and each read succeeded once
    assert conn.request_count == len(statuses)


def test_retries_give_up_with_engine_error(start_lab, lab_connect, fleets):
    from reconciler_lab.faults import FaultConfig
    lab = start_lab(fleets.load_fleet("demo"), faults=FaultConfig(error_rate=1.0))
    with pytest.raises(EngineUnavailable) as err:
        read_engine(lab_connect(lab), None,
                    timing=_quick(3))
    assert err.value.code == 503
    assert len(api_requests(lab)) == 3


def test_dropped_connections_are_retried(start_lab, lab_connect, fleets):
    from reconciler_lab.faults import FaultConfig
    fleet = fleets.load_fleet("demo")
    lab = start_lab(fleet, faults=FaultConfig(drop_rate=0.4, seed=3))
    conn = lab_connect(lab)
    read = read_engine(conn, None,
                       timing=_quick(12))
    assert {h.name for h in read.hosts} == {h.name for h in fleet.hosts}
    assert {v.name for v in read.vms} == {v.name for v in fleet.vms}
    statuses = [r.status for r in api_requests(lab)]
    assert 0 in statuses and statuses.count(200) == 3      # dropped unanswered, then answered
    # libcurl silently resends once when a reused keep-alive connection turns out dead, so the
    # lab's log (the ground truth) can hold more than the requests the SDK sent
    assert 3 <= conn.request_count <= len(statuses)


def test_expired_token_is_renewed_by_the_sdk(start_lab, lab_connect, fleets):
    from reconciler_lab.faults import FaultConfig
    from tests.support.clock import ManualClock

    clock = ManualClock()          # the token expires when the test moves this clock past it
    lab = start_lab(fleets.load_fleet("demo"), faults=FaultConfig(token_ttl=30), clock=clock)
    conn = lab_connect(lab)
    first = read_engine(conn, None)
    clock.advance(31)
    second = read_engine(conn, None)
    assert first.hosts == second.hosts
    logins = [r for r in lab.request_log if r.path.endswith("/sso/oauth/token")]
    assert len(logins) == 2
    assert any(r.status == 401 for r in api_requests(lab))


def test_connecting_waits_for_an_engine_that_is_restarting(fleets, tmp_path):
    """Connection refused while the engine restarts is retried; the first login then succeeds."""
    import threading

    from reconciler_lab.server import LabServer

    fleet = fleets.load_fleet("demo")
    first = LabServer(fleet, tmp_path / "lab", password="pw-restart")
    first.start()
    port, ca = first.port, Path(first.ca_file)
    first.stop()
    conn = connect(EngineSpec(url=f"https://127.0.0.1:{port}/ovirt-engine/api",
                              username=first.username, ca_file=ca), password="pw-restart")
    again = LabServer(fleet, tmp_path / "lab", port=port, password="pw-restart")
    starter = threading.Timer(0.5, again.start)
    starter.start()
    try:
        check_connection(conn, timing=Timing(retry=Backoff(initial=0.2, cap=0.4), attempts=10))
        assert len(read_engine(conn).hosts) == len(fleet.hosts)
    finally:
        starter.join()
        conn.close(logout=False)
        again.stop()
