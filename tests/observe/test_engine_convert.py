"""SDK types -> facts, using ovirtsdk4's own data types (as the SDK's reader produces them)."""
from __future__ import annotations

from ovirtsdk4 import types

from reconciler.observe.engine import (device_name, host_fact, host_search, parse_description,
                                       vm_fact, vm_search)
from reconciler.model.facts import Cluster
from reconciler.spec.model import (DesiredState, EngineSpec, HostProfile, HostSelector,
                                   PassthroughSpec, VmSpec)

CLUSTERS = {"c1": Cluster(id="c1", name="gpu", cpu_type="Secure AMD EPYC", architecture="x86_64")}
HEX = "pci_0000_86_00_0".encode().hex()


def names(mapping):
    return mapping.get


def test_device_name_from_hex_id_when_name_missing():
    assert device_name(types.HostDevice(id=HEX)) == "pci_0000_86_00_0"
    assert device_name(types.HostDevice(id=HEX, name="other")) == "other"
    assert device_name(None) is None


def test_parse_description():
    d = parse_description("num_heads=4, frl_config=60, framebuffer=2048M, max_instance=4")
    assert d["max_instance"] == "4" and d["framebuffer"] == "2048M"


def test_host_conversion():
    h = types.Host(
        id="h1", name="gpu-01", cluster=types.Cluster(id="c1"), status=types.HostStatus.UP,
        address="10.0.0.1",
        cpu=types.Cpu(type="AMD EPYC-Rome", name="AMD EPYC 7502 32-Core Processor"),
        os=types.OperatingSystem(custom_kernel_cmdline="amd_iommu=on",
                                 reported_kernel_cmdline="ro quiet"),
        reinstallation_required=True,
        device_passthrough=types.HostDevicePassthrough(enabled=True),
        vgpu_placement=types.VgpuPlacement.SEPARATED,
        devices=[types.HostDevice(
            id=HEX, name="pci_0000_86_00_0", capability="pci", iommu_group=40, driver="nvidia",
            vendor=types.Vendor(id="0x10de", name="NVIDIA Corporation"),
            product=types.Product(id="0x13F2", name="GM204GL [Tesla M60]"),
            parent_device=types.HostDevice(id="pci_0000_85_00_0".encode().hex()),
            virtual_functions=0, vm=types.Vm(id="v1"),
            m_dev_types=[types.MDevType(name="nvidia-18", human_readable_name="GRID M60-2Q",
                                        available_instances=3,
                                        description="num_heads=4, max_instance=4")])])
    fact = host_fact(h, CLUSTERS, names({"v1": "render-01"}))
    assert fact.cluster == "gpu" and fact.status == "up"
    assert fact.cpu_vendor == "amd" and fact.cpu_vendor_note is None
    assert fact.custom_kernel_cmdline == "amd_iommu=on"
    assert fact.reported_kernel_cmdline == "ro quiet"
    assert fact.reinstallation_required and fact.device_passthrough
    assert fact.vgpu_placement == "separated"
    (dev,) = fact.devices
    assert dev.pci_id == "10de:13f2" and dev.parent == "pci_0000_85_00_0"
    assert dev.iommu_group == 40 and dev.vm == "render-01"
    assert dev.mdev_types[0].max_instances == 4 and dev.mdev_types[0].available_instances == 3


def test_unset_custom_cmdline_is_empty_string():
    h = types.Host(id="h1", name="x", cluster=types.Cluster(id="c1"), status=types.HostStatus.UP)
    fact = host_fact(h, CLUSTERS, names({}))
    assert fact.custom_kernel_cmdline == "" and fact.devices == ()


def _with_href(obj, href):
    obj.href = href   # the SDK reader sets href from the XML attribute the same way
    return obj


def test_vm_conversion():
    v = types.Vm(
        id="v1", name="render-01", cluster=types.Cluster(id="c1"), status=types.VmStatus.UP,
        host=types.Host(id="h1"),
        placement_policy=types.VmPlacementPolicy(affinity=types.VmAffinity.PINNED,
                                                 hosts=[types.Host(id="h1")]),
        custom_properties=[types.CustomProperty(name="mdev_type", value="nvidia-18")],
        graphics_consoles=[types.GraphicsConsole(id="g1", protocol=types.GraphicsType.VNC)],
        host_devices=[
            types.HostDevice(id=HEX, name="pci_0000_86_00_0", host=types.Host(id="h1")),
            _with_href(types.HostDevice(id="pci_0000_86_00_1".encode().hex(), placeholder=True),
                       "/ovirt-engine/api/hosts/h1/devices/ab")],
        mediated_devices=[types.VmMediatedDevice(id="m1", spec_params=[
            types.Property(name="mdevType", value="nvidia-18"),
            types.Property(name="nodisplay", value="true"),
            types.Property(name="driverParams", value="enable_uvm=1")])])
    fact = vm_fact(v, CLUSTERS, names({"h1": "gpu-01"}))
    assert fact.host == "gpu-01" and fact.pinned_hosts == ("gpu-01",)
    assert fact.affinity == "pinned" and fact.status == "up" and fact.cluster == "gpu"
    assert [(d.name, d.host, d.placeholder) for d in fact.host_devices] == [
        ("pci_0000_86_00_0", "gpu-01", False), ("pci_0000_86_00_1", "gpu-01", True)]
    (m,) = fact.mediated_devices
    assert (m.mdev_type, m.nodisplay, m.driver_params) == ("nvidia-18", True, "enable_uvm=1")
    assert fact.graphics[0].protocol == "vnc"
    assert fact.legacy_mdev_property == "nvidia-18"


def _desired(*profiles, vms=()):
    return DesiredState(engine=EngineSpec(lab_fleet="demo"), host_profiles=profiles, vms=vms)


def test_search_narrows_to_profile_clusters_and_named_vms():
    d = _desired(HostProfile("a", HostSelector(cluster="gpu")),
                 HostProfile("b", HostSelector(cluster="render", names=("r-*",))),
                 vms=(VmSpec("cad-01", passthrough=PassthroughSpec("h", ("pci_0000_01_00_0",))),))
    assert host_search(d) == "cluster=gpu or cluster=render"
    assert vm_search(d) == "cluster=gpu or cluster=render or name=cad-01"


def test_search_reads_everything_when_a_profile_spans_clusters():
    d = _desired(HostProfile("a", HostSelector(cluster="gpu")),
                 HostProfile("b", HostSelector(names=("x-*",))))
    assert host_search(d) is None and vm_search(d) is None
    assert host_search(None) is None and host_search(_desired()) is None


def test_search_refuses_unsafe_values():
    d = _desired(HostProfile("a", HostSelector(cluster="my cluster")))
    assert host_search(d) is None
