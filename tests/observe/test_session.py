"""A fleet session through the endpoint the composition root picks: the lab reached as a real
engine (URL, CA file, password from env), and the embedded lab."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.access.endpoint import RealEndpoint, host_transports
from reconciler.commands.endpoints import fleet_session as open_fleet
from reconciler.observe.probe import probe_hosts
from reconciler.observe.session import managed_hosts
from reconciler_lab.endpoint import LabEndpoint
from reconciler.spec.model import (DesiredState, EngineSpec, HostAccess, HostProfile,
                                   HostSelector, SshAccess)

from .conftest import api_requests

pytestmark = pytest.mark.lab


def real_engine(lab, monkeypatch) -> EngineSpec:
    monkeypatch.setenv("OBSERVE_TEST_PW", lab.password)
    return EngineSpec(url=lab.url, username=lab.username, password_env="OBSERVE_TEST_PW",
                      ca_file=Path(lab.ca_file))


def gpu_cluster(fleet) -> str:
    return next(h.cluster for h in fleet.hosts if h.devices)


def test_local_roots_probe_the_managed_hosts(start_lab, fleets, tmp_path, monkeypatch):
    fleet = fleets.load_fleet("demo")
    lab = start_lab(fleet)
    cluster = gpu_cluster(fleet)
    roots = tmp_path / "roots"
    roots.mkdir()
    for h in fleet.hosts:
        (roots / h.name).symlink_to(lab.host_root(h.name), target_is_directory=True)
    desired = DesiredState(engine=real_engine(lab, monkeypatch),
                           host_access=HostAccess(local_roots=roots),
                           host_profiles=(HostProfile("p", HostSelector(cluster=cluster)),))
    with open_fleet(desired) as fleet_session:
        assert isinstance(fleet_session.endpoint, RealEndpoint)
        observed = fleet_session.observe()
        transports = fleet_session.transports()
        sent = fleet_session.request_count
    managed = {h.name for h in fleet.hosts if h.cluster == cluster}
    assert set(transports) == managed
    assert {type(t).__name__ for t in transports.values()} == {"LocalRootTransport"}
    assert {p.host for p in observed.probes} == managed
    assert all(p.ok for p in observed.probes), [p.reason for p in observed.probes]
    assert observed.stats.hosts_probed == len(managed) and observed.stats.probe_failures == 0
    assert observed.stats.engine_requests == 3 == sent == len(api_requests(lab))
    for p in observed.probes:
        host = observed.host(p.host)
        assert p.proc_cmdline and host.reported_kernel_cmdline
        assert p.proc_cmdline.split() == host.reported_kernel_cmdline.split()


def test_ssh_transports_go_to_the_engine_address(start_lab, fleets, tmp_path, monkeypatch):
    fleet = fleets.load_fleet("demo")
    lab = start_lab(fleet)
    known = tmp_path / "known_hosts"
    known.write_text("")
    desired = DesiredState(
        engine=real_engine(lab, monkeypatch),
        host_access=HostAccess(ssh=SshAccess(user="root", port=2222, known_hosts_file=known)),
        host_profiles=(HostProfile("p", HostSelector(cluster=gpu_cluster(fleet))),))
    with open_fleet(desired) as fleet_session:
        read = fleet_session.read_engine()
        transports = fleet_session.transports()
    assert set(transports) == {h.name for h in managed_hosts(desired, read.hosts)}
    for name, transport in transports.items():
        assert type(transport).__name__ == "OpenSSHTransport"
        assert transport.host == read.addresses[name] and transport.port == 2222


def test_embedded_lab_session(tmp_path, fleets):
    fleet = fleets.load_fleet("demo")
    desired = DesiredState(engine=EngineSpec(lab_fleet="demo", lab_state=tmp_path / "state"),
                           host_profiles=(HostProfile("p", HostSelector(cluster=gpu_cluster(fleet))),))
    with open_fleet(desired) as fleet_session:
        assert isinstance(fleet_session.endpoint, LabEndpoint)
        observed = fleet_session.observe()
        assert {type(t).__name__ for t in fleet_session.transports().values()} == {"LabTransport"}
    assert observed.probes and all(p.ok for p in observed.probes)


def test_a_host_without_a_usable_address_is_unknown_and_the_others_are_probed(tmp_path):
    """One host the engine gives no address (or a refused one) does not stop the observation."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    access = HostAccess(ssh=SshAccess(user="root", known_hosts_file=known, timeout_seconds=5))
    transports = host_transports(access, ["gpu-01", "gpu-02", "gpu-03"], {
        "gpu-02": "-oProxyCommand=reboot", "gpu-03": "gpu-03.invalid"})
    assert set(transports) == {"gpu-01", "gpu-02", "gpu-03"}
    probes = {p.host: p for p in probe_hosts(transports, concurrency=3, timeout=5)}
    assert probes["gpu-01"].status == "unknown"
    assert "no address" in (probes["gpu-01"].reason or "")
    assert "invalid host name" in (probes["gpu-02"].reason or "")
    assert probes["gpu-03"].status == "unknown"          # ssh ran and could not resolve it
    assert "gpu-03.invalid" in (probes["gpu-03"].reason or "")
