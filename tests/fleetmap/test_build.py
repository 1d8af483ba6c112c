"""The fleet map from facts: modes, the VM-to-GPU join, seats, headroom and the map's own checks."""
from __future__ import annotations

from dataclasses import replace

from reconciler.fleetmap import build_fleet_map
from reconciler.fleetmap.join import legacy_mdev_uuid
from reconciler.fleetmap.model import FleetMap, GpuView, HostView
from reconciler.model.facts import (Cluster, Host, HostDevice, MdevType, MediatedDevice, Observed,
                                    ProbeFacts, Vm, VmHostDevice)
from reconciler.plan.result import DriftItem, Plan

M60_TYPES = (("nvidia-11", "GRID M60-0B", 16), ("nvidia-18", "GRID M60-2Q", 4),
             ("nvidia-22", "GRID M60-8Q", 1))
M60_MDEVS = ("3c1e0a52-7a1a-4c34-9f10-0f6c0e5a3d11", "8f2d7f0b-5b8e-4a0e-8d2f-2f7c1a9e6b22",
             "d41a9c3e-1f6b-4c1d-a7e2-9b3a5c6d7e33")


def m60_device(address: str, used: int = 0) -> HostDevice:
    bus = address.split(":")[1]
    types = tuple(MdevType(t, (m - used if t == "nvidia-18" else (0 if used else m)), human,
                           max_instances=m) for t, human, m in M60_TYPES)
    return HostDevice(f"pci_0000_{bus}_00_0", iommu_group=40, driver="nvidia", vendor_id="10de",
                      product_id="13f2", product_name="GM204GL [Tesla M60]", mdev_types=types)


def m60_host(name: str = "m60", placement: str = "consolidated", used: int = 3) -> Host:
    return Host(id=name, name=name, cluster="vdi", status="up", cpu_vendor="intel",
                vgpu_placement=placement, device_passthrough=True,
                devices=(m60_device("0000:05:00.0", used), m60_device("0000:06:00.0"),
                         m60_device("0000:85:00.0"), m60_device("0000:86:00.0")))


def vdi_vm(name: str, mdev: str, host: str = "m60") -> Vm:
    return Vm(id=f"id-{name}", name=name, cluster="vdi", status="up", host=host,
              mediated_devices=(MediatedDevice(mdev, "nvidia-18"),))


def gpu(fm: FleetMap, host: str, address: str) -> GpuView:
    return next(g for h, g in fm.gpus() if h.name == host and g.address == address)


def host_view(fm: FleetMap, name: str) -> HostView:
    return next(h for h in fm.hosts() if h.name == name)


CLUSTERS = (Cluster("c1", "vdi", "Intel Cascadelake Server Family", "x86_64"),
            Cluster("c2", "ml", "Secure AMD EPYC", "x86_64"))


def m60_fleet(probes: dict[str, ProbeFacts], vms: tuple[Vm, ...], **host: object) -> Observed:
    probe = replace(probes["m60-mdev"], host="m60")
    return Observed(clusters=CLUSTERS, hosts=(m60_host(**host),), vms=vms, probes=(probe,))  # type: ignore[arg-type]


def test_vgpu_vms_join_their_gpu_by_mdev_uuid(probes: dict[str, ProbeFacts]) -> None:
    vms = tuple(vdi_vm(f"vdi-{i}", u.upper() if i == 0 else u) for i, u in enumerate(M60_MDEVS))
    fm = build_fleet_map(m60_fleet(probes, vms))
    g = gpu(fm, "m60", "0000:05:00.0")
    assert (g.mode, g.vgpu_type, g.vgpu_type_name, g.seats_used, g.seats_total) == \
        ("vgpu", "nvidia-18", "GRID M60-2Q", 3, 4)
    assert [(v.name, v.via, v.mdev_uuid) for v in g.vms] == \
        [(f"vdi-{i}", "mdev", u) for i, u in enumerate(M60_MDEVS)]
    assert g.smi is not None and (g.smi.memory_used_mib, g.smi.vgpus_active) == (6199, 3)
    assert g.flags == () and g.occupancy == 0.75
    assert [x.mode for x in host_view(fm, "m60").gpus] == ["vgpu", "idle", "idle", "idle"]
    assert host_view(fm, "m60").driver_version == "535.161.05"


def test_unmatched_mdevs_fall_back_to_legacy_uuid_then_nvidia_smi(
        probes: dict[str, ProbeFacts]) -> None:
    legacy_vm = Vm(id="legacy-vm-id", name="old-vdi", cluster="vdi", status="up", host="m60",
                   legacy_mdev_property="nvidia-18")
    probe = probes["m60-mdev"]
    # the first mdev is the legacy VM's (vdsm named it uuid3(namespace, VM id))
    mdev0 = replace(probe.mdevs[0], uuid=legacy_mdev_uuid("legacy-vm-id"))
    probe = replace(probe, host="m60", mdevs=(mdev0, *probe.mdevs[1:]))
    smi_vm = Vm(id="x", name="vm-desktop-02", cluster="vdi", status="up", host="m60")
    fm = build_fleet_map(Observed(clusters=CLUSTERS, hosts=(m60_host(),),
                                  vms=(legacy_vm, smi_vm), probes=(probe,)))
    g = gpu(fm, "m60", "0000:05:00.0")
    assert [(v.name, v.via) for v in g.vms] == [
        ("old-vdi", "mdev-legacy"), ("vm-desktop-02", "nvidia-smi"), ("vm-desktop-03", "nvidia-smi")]
    # nvidia-smi names vm-desktop-03, but the engine has no such VM: shown without a status
    assert g.vms[2].status is None


def test_mdev_no_vm_owns_is_flagged(probes: dict[str, ProbeFacts]) -> None:
    probe = replace(probes["m60-mdev"], host="m60", nvidia_smi=None)
    fm = build_fleet_map(Observed(clusters=CLUSTERS, hosts=(m60_host(),), vms=(),
                                  probes=(probe,)))
    g = gpu(fm, "m60", "0000:05:00.0")
    assert all(v.name.startswith("?") and v.status is None for v in g.vms)
    assert len([f for f in g.flags if "belongs to no VM" in f.message]) == 3


def test_engine_facts_only_count_seats_but_cannot_place_vms() -> None:
    vm = vdi_vm("vdi-0", M60_MDEVS[0])
    fm = build_fleet_map(Observed(clusters=CLUSTERS, hosts=(m60_host(used=1),), vms=(vm,)))
    g = gpu(fm, "m60", "0000:05:00.0")
    assert (g.mode, g.seats_used, g.seats_total, g.vms, g.smi) == ("vgpu", 1, 4, (), None)
    h = host_view(fm, "m60")
    assert h.vgpu_vms_unplaced == ("vdi-0",) and h.probe_note == "not probed"


def test_passthrough_holder_and_host_driver() -> None:
    h100 = HostDevice("pci_0000_e1_00_0", iommu_group=92, driver="vfio-pci", vendor_id="10de",
                      product_id="2331", product_name="GH100 [H100 PCIe]")
    quadro = HostDevice("pci_0000_41_00_0", iommu_group=44, driver="nouveau", vendor_id="10de",
                        product_id="11b4", product_name="GK104GL [Quadro K4200]")
    audio = HostDevice("pci_0000_41_00_1", iommu_group=44, driver="snd_hda_intel",
                       vendor_id="10de", product_id="0e0a", product_name="GK104 HDMI Audio Controller")
    host = Host(id="a", name="amd-01", cluster="ml", status="up", cpu_vendor="amd",
                device_passthrough=True, devices=(h100, quadro, audio))
    ml = Vm(id="m", name="ml-01", cluster="ml", status="down", pinned_hosts=("amd-01",),
            host_devices=(VmHostDevice("pci_0000_e1_00_0", "amd-01"),))
    fm = build_fleet_map(Observed(clusters=CLUSTERS, hosts=(host,), vms=(ml,)))
    assert [(g.address, g.mode) for g in host_view(fm, "amd-01").gpus] == [
        ("0000:41:00.0", "host"), ("0000:e1:00.0", "passthrough")]
    held = gpu(fm, "amd-01", "0000:e1:00.0")
    assert [(v.name, v.status, v.via) for v in held.vms] == [("ml-01", "down", "hostdev")]
    assert held.occupancy == 1.0


def test_per_vf_boards(probes: dict[str, ProbeFacts]) -> None:
    vms = (vdi_vm("cad-ws-11", "1a2b3c4d-5e6f-4071-8293-a4b5c6d7e801", "a10"),
           vdi_vm("cad-ws-12", "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f902", "a10"))
    hosts = (Host(id="a10", name="a10", cluster="vdi", status="up"),
             Host(id="l40s", name="l40s", cluster="vdi", status="up"))
    fm = build_fleet_map(Observed(clusters=CLUSTERS, hosts=hosts, vms=vms, probes=(
        replace(probes["a10-vf-mdev"], host="a10"), replace(probes["l40s-sriov"], host="l40s"))))
    a10 = gpu(fm, "a10", "0000:41:00.0")
    assert (a10.backend, a10.mode, a10.vgpu_type, a10.vgpu_type_name, a10.seats_used,
            a10.seats_total) == ("mdev-vf", "vgpu", "nvidia-593", "NVIDIA A10-4Q", 2, 6)
    assert [(v.name, v.parent) for v in a10.vms] == [("cad-ws-11", "0000:41:00.4"),
                                                      ("cad-ws-12", "0000:41:00.5")]
    l40s = gpu(fm, "l40s", "0000:41:00.0")
    assert (l40s.backend, l40s.mode, l40s.vgpu_type, l40s.vgpu_type_name, l40s.seats_used,
            l40s.seats_total) == ("vendor-vfio", "vgpu", "nvidia-1148", "NVIDIA L40S-2Q", 2, 24)
    assert [(v.name, v.via) for v in l40s.vms] == [("vm-ai-01", "nvidia-smi"),
                                                  ("vm-ai-02", "nvidia-smi")]
    assert [len(h.gpus) for h in fm.hosts()] == [1, 1]          # VFs are not GPUs of their own


def test_totals_and_headroom_follow_one_type_per_gpu(probes: dict[str, ProbeFacts]) -> None:
    vms = tuple(vdi_vm(f"vdi-{i}", u) for i, u in enumerate(M60_MDEVS))
    fm = build_fleet_map(m60_fleet(probes, vms))
    t18 = next(t for t in fm.totals if t.cluster == "vdi" and t.type == "nvidia-18")
    assert (t18.used, t18.free, t18.capacity, t18.gpus_running, t18.gpus_idle) == (3, 13, 16, 1, 3)
    t11 = next(t for t in fm.totals if t.cluster == "vdi" and t.type == "nvidia-11")
    assert (t11.used, t11.free, t11.gpus_idle) == (0, 48, 3)   # not on the GPU running M60-2Q
    fleet = next(t for t in fm.totals if t.cluster is None and t.type == "nvidia-18")
    assert (fleet.used, fleet.capacity) == (3, 16)
    r = next(r for r in fm.headroom if r.type == "nvidia-18")
    assert (r.vms, r.next[0].host, r.next[0].gpu) == (13, "m60", "0000:05:00.0")


def test_separated_placement_goes_to_an_idle_gpu_first(probes: dict[str, ProbeFacts]) -> None:
    vms = tuple(vdi_vm(f"vdi-{i}", u) for i, u in enumerate(M60_MDEVS))
    fm = build_fleet_map(m60_fleet(probes, vms, placement="separated"))
    r = next(r for r in fm.headroom if r.type == "nvidia-18")
    assert r.next[0].gpu == "0000:06:00.0"


def test_instances_per_vm_come_from_the_spec(probes: dict[str, ProbeFacts]) -> None:
    from reconciler.spec.model import DesiredState, EngineSpec, VgpuSpec, VmSpec
    desired = DesiredState(engine=EngineSpec(url="https://e/ovirt-engine/api"), vms=(
        VmSpec("a", vgpu=VgpuSpec("nvidia-18", 2)), VmSpec("b", vgpu=VgpuSpec("nvidia-18", 2)),
        VmSpec("c", vgpu=VgpuSpec("nvidia-18", 1))))
    fm = build_fleet_map(m60_fleet(probes, ()), desired=desired)
    r = next(r for r in fm.headroom if r.type == "nvidia-18")
    assert (r.instances_per_vm, r.vms) == (2, 6)    # 13 free seats; 1 on the busy GPU is stranded


def test_cpu_vendor_disagreement_and_wrong_iommu_argument(probes: dict[str, ProbeFacts]) -> None:
    epyc = replace(probes["epyc-h100-passthrough"], host="epyc",
                   proc_cmdline=probes["epyc-h100-passthrough"].proc_cmdline + " intel_iommu=on")
    host = Host(id="e", name="epyc", cluster="vdi", status="up", cpu_vendor="intel",
                cpu_type="Intel Cascadelake Server Family")
    fm = build_fleet_map(Observed(clusters=CLUSTERS, hosts=(host,), probes=(epyc,)))
    messages = [f.message for f in host_view(fm, "epyc").flags]
    assert any(m.startswith("CPU vendor: the engine's CPU type 'Intel Cascadelake Server Family' "
                            "says intel, the host's /proc/cpuinfo says AuthenticAMD") for m in messages)
    assert any("intel_iommu=on on an AMD CPU" in m for m in messages)
    assert host_view(fm, "epyc").probe_cpu_vendor == "amd"


def test_iommu_off_host_with_a_held_gpu_is_flagged(probes: dict[str, ProbeFacts]) -> None:
    t4 = replace(probes["t4-iommu-off"], host="t4")
    dev = HostDevice("pci_0000_d8_00_0", driver="nvidia", vendor_id="10de", product_id="1eb8",
                     product_name="TU104GL [Tesla T4]")
    host = Host(id="t", name="t4", cluster="vdi", status="up", cpu_vendor="intel",
                devices=(dev,))
    vm = Vm(id="v", name="pt-vm", cluster="vdi", status="down", pinned_hosts=("t4",),
            host_devices=(VmHostDevice("pci_0000_d8_00_0", "t4"),))
    fm = build_fleet_map(Observed(clusters=CLUSTERS, hosts=(host,), vms=(vm,), probes=(t4,)))
    assert gpu(fm, "t4", "0000:d8:00.0").mode == "passthrough"
    assert gpu(fm, "t4", "0000:3b:00.0").mode == "vgpu"        # probe-only GPU still mapped
    assert any("the IOMMU is off" in f.message for f in host_view(fm, "t4").flags)


def test_plan_items_land_on_the_gpu_of_their_vm(probes: dict[str, ProbeFacts]) -> None:
    vms = tuple(vdi_vm(f"vdi-{i}", u) for i, u in enumerate(M60_MDEVS))
    the_plan = Plan(drift=(DriftItem("vm:vdi-1", "pending", "update vGPU"),
                           DriftItem("host:m60", "blocked", "kernel.iommu: no vendor"),
                           DriftItem("vm:nowhere", "drift", "gone")))
    fm = build_fleet_map(m60_fleet(probes, vms), the_plan)
    assert [f.message for f in gpu(fm, "m60", "0000:05:00.0").flags] == ["update vGPU"]
    assert [(f.kind, f.key) for f in host_view(fm, "m60").flags] == [("blocked", "host:m60")]
    assert [f.key for f in fm.flags] == ["vm:nowhere"]
