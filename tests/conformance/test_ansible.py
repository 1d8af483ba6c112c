"""The `ovirt.ovirt` Ansible collection (as `ansible` 9.x bundles it) run unchanged against the lab.

One lab and one playbook per group of modules; state groups run twice, and the second run must
report no change for declarative states. Action states (`reinstalled`, `refreshed`) act on every
run on a real engine too, so they report a change both times.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from reconciler_lab.fleet import load_fleet
from reconciler_lab.server import LabServer
from tests.conformance.ansible import TaskResult, ansible_playbook, run_playbook
from tests.conformance.conftest import start_lab

pytestmark = pytest.mark.lab
Results = dict[str, TaskResult]


def test_ansible_playbook_is_installed() -> None:
    # A missing client is a failure, never a skip: the whole suite below would prove nothing.
    assert ansible_playbook().exists(), "install the conformance extra: pip install -e '.[conformance]'"


def _engine_vm(lab: LabServer, name: str) -> tuple[str, dict[str, dict[str, str]], dict[str, str]]:
    assert lab.engine is not None
    with lab.engine.lock:
        vm = lab.engine.vm_by_name(name)
        return vm.status, {k: dict(v) for k, v in vm.mdevs.items()}, dict(vm.custom_properties)


def test_info_modules(lab: LabServer, tmp_path: Path) -> None:
    before = len(lab.request_log)
    r = run_playbook("info", lab, tmp_path)
    assert not any(t.changed for t in r.values())

    hosts = r["Hosts of a cluster with their devices"].result["ovirt_hosts"]
    assert sorted(h["name"] for h in hosts) == ["m60-01", "m60-02", "t4-01"]
    m60 = next(h for h in hosts if h["name"] == "m60-01")
    assert any(d.get("m_dev_types") for d in m60["devices"])
    assert m60["power_management"]["kdump_detection"] is True

    nested = r["One host with every link followed"].result["ovirt_hosts"][0]
    assert nested["cluster"]["name"] == "gpu-intel"
    vm = r["One VM with every link followed"].result["ovirt_vms"][0]
    assert vm["cluster"]["name"] == "gpu-intel" and vm["template"]["name"] == "Blank"
    assert vm["host"]["name"] == "m60-01"

    paged = r["VMs sorted and paged"].result["ovirt_vms"]
    assert [v["name"] for v in paged] == ["web-01", "vdi-03"]

    latest = [e["index"] for e in r["Latest events"].result["ovirt_events"]]
    assert 1 <= len(latest) <= 3 and latest == sorted(latest, reverse=True)
    assert [e["code"] for e in r["Engine start event"].result["ovirt_events"]] == [1]
    clusters = r["Cluster by name"].result["ovirt_clusters"]
    assert [c["name"] for c in clusters] == ["gpu-amd"]

    # fetch_nested followed every advertised link: none of them may be dead.
    api = lab.request_log[before:]
    dead = sorted({(rec.path, rec.status) for rec in api
                   if rec.path.startswith("/ovirt-engine/api") and rec.status >= 400})
    assert not dead


@pytest.fixture(scope="module")
def host_runs(lab: LabServer, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Results, Results]]:
    work = tmp_path_factory.mktemp("host-playbook")
    yield run_playbook("host", lab, work), run_playbook("host", lab, work)


def test_host_module(lab: LabServer, connection: sdk.Connection,
                     host_runs: tuple[Results, Results]) -> None:
    first, second = host_runs
    assert first["Host to maintenance"].changed
    assert first["Kernel parameters and vGPU placement"].changed
    assert first["Reinstall to apply them"].changed
    assert first["Refresh capabilities"].changed
    # Declarative states converge; actions act again.
    assert not second["Host to maintenance"].changed
    assert not second["Kernel parameters and vGPU placement"].changed
    assert second["Reinstall to apply them"].changed
    assert second["Refresh capabilities"].changed

    hosts = {h.name: h for h in connection.system_service().hosts_service().list()}
    assert str(hosts["m60-02"].status) == "maintenance"
    t4 = hosts["t4-01"]
    assert str(t4.status) == "up" and str(t4.vgpu_placement) == "separated"
    assert t4.os.custom_kernel_cmdline == "intel_iommu=on rdblacklist=nouveau pci=realloc"
    assert "pci=realloc" in t4.os.reported_kernel_cmdline.split()
    assert t4.reinstallation_required is False and t4.device_passthrough.enabled is True
    codes = [e.code for e in connection.system_service().events_service().list(
        search="type=606")]
    assert len(codes) == 2


@pytest.fixture(scope="module")
def vm_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LabServer, Results, Results]]:
    lab = start_lab("demo", tmp_path_factory.mktemp("vm-lab"))
    try:
        work = tmp_path_factory.mktemp("vm-playbook")
        yield lab, run_playbook("vm", lab, work), run_playbook("vm", lab, work)
    finally:
        lab.stop()


def test_vm_module(vm_runs: tuple[LabServer, Results, Results]) -> None:
    lab, first, second = vm_runs
    for task in ("Pass a GPU through to a pinned VM", "Pin a VM to a host with a VNC console only",
                 "Start it", "Stop another"):
        assert first[task].changed, task
        assert not second[task].changed, task
    assert lab.engine is not None
    e = lab.engine
    with e.lock:
        cad = e.vm_by_name("cad-01")
        assert cad.host_devices == {"pci_0000_41_00_0": False, "pci_0000_41_00_1": True}
        vdi = e.vm_by_name("vdi-02")
        assert [e.hosts[h].name for h in vdi.pinned_host_ids] == ["m60-01"]
        assert vdi.affinity == "pinned" and vdi.consoles == ["vnc"]
        assert vdi.status == "up" and e.hosts[vdi.host_id or ""].name == "m60-01"
        assert e.vm_by_name("web-01").status == "down"


@pytest.mark.parametrize("engine_version", ["4.4.10", "4.5.6"])
def test_legacy_mdev_type_property(engine_version: str,
                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    fleet = dataclasses.replace(load_fleet("demo"), engine_version=engine_version)
    lab = start_lab(fleet, tmp_path_factory.mktemp("legacy-lab"))
    try:
        work = tmp_path_factory.mktemp("legacy-playbook")
        first = run_playbook("legacy", lab, work)
        _, mdevs_first, props_first = _engine_vm(lab, "vdi-02")
        second = run_playbook("legacy", lab, work)
        _, mdevs, props = _engine_vm(lab, "vdi-02")
    finally:
        lab.stop()
    task = "vGPU as the mdev_type custom property"
    assert first[task].changed
    if engine_version.startswith("4.4"):
        # 4.4 keeps the property as given: the second run finds it and changes nothing.
        assert props == {"mdev_type": "nodisplay,nvidia-18"} and not mdevs
        assert not second[task].changed
    else:
        # 4.5 turns it into a mediated device and drops it (UpdateVmCommand#updateMdevDevices),
        # so the module, which compares custom properties, sends it again on every run; each
        # time the converted device replaces the previous one.
        assert props_first == props == {}
        assert [dict(m) for m in mdevs.values()] == [{"mdevType": "nvidia-18",
                                                       "nodisplay": "true"}]
        assert set(mdevs) != set(mdevs_first)
        assert second[task].changed
