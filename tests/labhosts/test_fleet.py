"""The demo fleet, fleet files and the dump/load round trip."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ReconcilerError
from reconciler_lab import catalogue
from reconciler_lab.fleet import LabFleet, dump_fleet, load_fleet


def test_demo_names(demo: LabFleet) -> None:
    assert {c.name: c.cpu_type for c in demo.clusters} == {
        "gpu-intel": "Intel Cascadelake Server Family", "gpu-amd": "Secure AMD EPYC"}
    assert {h.name: h.cluster for h in demo.hosts} == {
        "m60-01": "gpu-intel", "m60-02": "gpu-intel", "t4-01": "gpu-intel", "amd-01": "gpu-amd"}
    assert [v.name for v in demo.vms] == ["vdi-01", "vdi-02", "vdi-03", "cad-01", "ml-01",
                                          "web-01"]


def test_demo_host_states(demo_host) -> None:
    m1, m2, t4, amd = (demo_host(n) for n in ("m60-01", "m60-02", "t4-01", "amd-01"))
    assert m1.booted_custom_args == m1.custom_kernel_cmdline == "intel_iommu=on rdblacklist=nouveau"
    assert m2.custom_kernel_cmdline == "" and m2.booted_custom_args == ""
    assert t4.custom_kernel_cmdline == "intel_iommu=on rdblacklist=nouveau"
    assert t4.booted_custom_args == "" and t4.reinstallation_required
    assert not m1.reinstallation_required and not amd.reinstallation_required
    assert ("nvidia-vgpu-mgr.service", "active") in m1.services
    assert not any(u == "nvidia-vgpu-mgr.service" for u, _ in amd.services)


def test_demo_devices(demo_host) -> None:
    m1 = {d.name: d for d in demo_host("m60-01").devices}
    gpus = [d for d in m1.values() if d.product_id == "13f2"]
    assert len(gpus) == 4 and all(d.driver == "nvidia" for d in gpus)
    m60_2q = next(t for t in m1["pci_0000_05_00_0"].mdev_types if t.name == "nvidia-18")
    assert m60_2q.human_readable_name == "GRID M60-2Q" and m60_2q.max_instances == 4
    assert m60_2q.description == ("num_heads=4, frl_config=60, framebuffer=2048M, "
                                  "max_resolution=5120x2880, max_instance=4")
    assert m1["pci_0000_05_00_0"].iommu_group == 40
    assert m1["pci_0000_05_00_0"].parent in m1          # parents are listed devices
    assert m1["computer"].capability == "system"
    # m60-02 booted without intel_iommu=on: no IOMMU groups to report
    m2 = {d.name: d for d in demo_host("m60-02").devices}
    assert m2["pci_0000_05_00_0"].iommu_group is None
    amd = {d.name: d for d in demo_host("amd-01").devices}
    video, audio, h100 = amd["pci_0000_41_00_0"], amd["pci_0000_41_00_1"], amd["pci_0000_e1_00_0"]
    assert (video.product_id, audio.product_id, h100.product_id) == ("11b4", "0e0a", "2331")
    assert video.iommu_group == audio.iommu_group == 44     # AMD IOMMU is on by default
    assert "pci_0000_e1_00_1" not in amd                     # H100: one function
    assert video.driver == h100.driver == "nouveau" and not video.mdev_types


def test_catalogue_ids() -> None:
    assert catalogue.model("tesla-m60").pci_id == "10de:13f2"
    assert catalogue.model("tesla-m60").gpus_per_board == 2
    assert catalogue.model("tesla-t4").pci_id == "10de:1eb8"
    assert catalogue.model("h100-pcie").pci_id == "10de:2331"
    assert catalogue.model("quadro-k4200").audio_product_id == "0e0a"
    assert catalogue.model("l40s").backend == "vendor-vfio"
    assert [t.name for t in catalogue.model("tesla-m60").mdev_types][:12] == [
        f"nvidia-{n}" for n in range(11, 23)]
    assert catalogue.vf_address("0000:41:00.0", 10) == "0000:41:01.6"
    assert catalogue.vf_address("0000:41:00.0", 31) == "0000:41:04.3"
    with pytest.raises(KeyError, match="known"):
        catalogue.model("tesla-x")


def test_round_trip_demo(demo: LabFleet, tmp_path: Path) -> None:
    path = tmp_path / "copy.yaml"
    path.write_text(dump_fleet(demo))
    assert load_fleet(path) == demo
    assert load_fleet(str(path)) == demo


def test_unknown_fleet() -> None:
    with pytest.raises(ReconcilerError, match="unknown lab fleet 'nope'.*demo"):
        load_fleet("nope")
    with pytest.raises(ReconcilerError, match="does not exist"):
        load_fleet("/nonexistent/fleet.yaml")


@pytest.mark.parametrize("text, message", [
    ("name: x\nclusters: [{name: c}]\nhosts: [{name: h, cluster: c, gpus: [{model: tesla-x, "
     "address: '0000:05:00.0', iommuGroup: 1}]}]\n", "unknown GPU model 'tesla-x'"),
    ("name: x\nclusters: [{name: c}]\nhosts: [{name: h, cluster: d}]\n", "unknown cluster 'd'"),
    ("name: x\nhostz: []\n", "unknown key.*hostz"),
    ("name: x\nclusters: [{name: c}]\nvms: [{name: v, cluster: c, status: up}]\n",
     "needs its host"),
    ("name: x\nclusters: [{name: c}]\nhosts: [{name: h, cluster: c, gpus: [{model: tesla-t4, "
     "address: '5:00.0', iommuGroup: 1}]}]\n", "bad PCI address"),
    ("name: [unclosed\n", "not valid YAML"),
    ("- just a list\n", "expected a mapping"),
])
def test_bad_fleet_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ReconcilerError, match=message):
        load_fleet(path)


def test_hand_built_devices_round_trip(tmp_path: Path) -> None:
    from reconciler_lab.fleet import (LabCluster, LabDevice, LabFleet, LabHost, LabMdevType,
                                      fleet_from_dict, fleet_to_dict)
    host = LabHost(name="h", cluster="c", cpu_type="Intel Cascadelake Server Family",
                   cpu_name="x", devices=(LabDevice("computer", "system"), LabDevice(
                       "pci_0000_05_00_0", iommu_group=3, driver="nvidia", vendor_id="10de",
                       product_id="13f2", parent="computer",
                       mdev_types=(LabMdevType("nvidia-18", "GRID M60-2Q", 4, "d"),))))
    fleet = LabFleet("x", clusters=(LabCluster("c", "Intel Cascadelake Server Family"),),
                     hosts=(host,))
    assert fleet_from_dict(fleet_to_dict(fleet)) == fleet
    # a root can still be made from the devices alone
    from reconciler_lab import hosts
    root = hosts.ensure_host_root(tmp_path / "h", host)
    assert (root / "sys/bus/pci/devices/0000:05:00.0/device").read_text() == "0x13f2\n"


def test_example_specs_name_demo_things(demo: LabFleet) -> None:
    """The example specs for the lab refer only to hosts, VMs, devices and types of the demo."""
    import yaml
    root = Path(__file__).resolve().parents[2] / "specs" / "examples"
    vms = {v.name for v in demo.vms}
    devices = {(h.name, d.name) for h in demo.hosts for d in h.devices}
    types = {t.name for h in demo.hosts for d in h.devices for t in d.mdev_types}
    for name in ("lab.yaml", "lab-blocked.yaml"):
        spec = yaml.safe_load((root / name).read_text())
        assert spec["apiVersion"] == "gpu-reconciler/v1"
        assert spec["engine"] == {"lab": {"fleet": "demo"}}
        for vm in spec["vms"]:
            assert vm["name"] in vms
            if "passthrough" in vm:
                for dev in vm["passthrough"]["devices"]:
                    assert (vm["passthrough"]["host"], dev) in devices
            if "vgpu" in vm:
                assert vm["vgpu"]["type"] in types
        for profile in spec["hostProfiles"]:
            sel = profile["selector"]
            assert sel["cluster"] in {c.name for c in demo.clusters}


def test_fleet_yaml_error_is_one_located_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nclusters: [\n")
    with pytest.raises(ReconcilerError) as caught:
        load_fleet(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:3:1: not valid YAML: ") and "\n" not in message
