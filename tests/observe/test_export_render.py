"""Pure parts of export and of the observe output, on hand-built facts."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from reconciler.commands.observe import observed_to_json, render_text
from reconciler.export import dump_spec, export_spec, kernel_from_cmdline
from reconciler.model.facts import (Cluster, GraphicsConsole, Host, HostDevice, MdevType,
                                      MediatedDevice, Observed, ObserveStats, Vm, VmHostDevice)

ROOT = Path(__file__).resolve().parents[2]


def schema(name):
    return json.loads((ROOT / "schemas" / name).read_text())


M60 = HostDevice(name="pci_0000_86_00_0", iommu_group=40, driver="nvidia", vendor_id="10de",
                 product_id="13f2", product_name="GM204GL [Tesla M60]",
                 mdev_types=(MdevType("nvidia-18", 3, "GRID M60-2Q", "max_instance=4", 4),))
K2200 = HostDevice(name="pci_0000_03_00_0", iommu_group=12, driver="vfio-pci", vendor_id="10de",
                   product_id="13ba", vm="cad-01")
AUDIO = HostDevice(name="pci_0000_03_00_1", iommu_group=12, driver="vfio-pci", vendor_id="10de",
                   product_id="0fbc", vm="cad-01")
NIC = HostDevice(name="pci_0000_01_00_0", vendor_id="8086", product_id="1521")


def fleet():
    hosts = (
        Host("h1", "gpu-01", "gpu", "up", cpu_vendor="intel",
             custom_kernel_cmdline="intel_iommu=on rdblacklist=nouveau pci=realloc",
             vgpu_placement="consolidated", devices=(M60, NIC)),
        Host("h2", "gpu-02", "gpu", "up", cpu_vendor="intel",
             custom_kernel_cmdline="rdblacklist=nouveau intel_iommu=on pci=realloc",
             vgpu_placement="consolidated", devices=(M60,)),
        Host("h3", "pt-01", "gpu", "up", cpu_vendor="amd",
             custom_kernel_cmdline="amd_iommu=on iommu=pt pci-stub.ids=10de:13ba,10de:0fbc",
             devices=(K2200, AUDIO)),
        Host("h4", "plain-01", "other", "up", devices=(NIC,)),
    )
    vms = (
        Vm("v1", "cad-01", "gpu", "down", pinned_hosts=("pt-01",), affinity="pinned",
           host_devices=(VmHostDevice("pci_0000_03_00_0", "pt-01"),
                         VmHostDevice("pci_0000_03_00_1", "pt-01", placeholder=True))),
        Vm("v2", "render-01", "gpu", "up", host="gpu-01",
           graphics=(GraphicsConsole("g", "vnc"),),
           mediated_devices=(MediatedDevice("m1", "nvidia-18", nodisplay=True,
                                            driver_params="enable_uvm=1"),
                             MediatedDevice("m2", "nvidia-18", nodisplay=True,
                                            driver_params="enable_uvm=1"))),
        Vm("v3", "web-01", "other", "up"),
    )
    return Observed(clusters=(Cluster("c1", "gpu"), Cluster("c2", "other")), hosts=hosts,
                    vms=vms, stats=ObserveStats(3, 0, 0, 0.5))


def test_kernel_block_from_custom_cmdline():
    assert kernel_from_cmdline("amd_iommu=on iommu=pt pci-stub.ids=10DE:13ba pci=realloc") == {
        "iommu": True, "iommuPassthrough": True,
        "pciStub": ["10de:13ba"], "extraArgs": ["pci=realloc"]}
    # What the engine line does not set stays unmanaged (it may be in the host's GRUB config).
    assert kernel_from_cmdline("") == {}
    assert kernel_from_cmdline("rdblacklist=nouveau") == {"blacklistNouveau": True}


def test_export_groups_identical_hosts_and_validates_against_the_spec_schema():
    engine = {"lab": {"fleet": "demo"}}
    spec = export_spec(fleet(), engine)
    jsonschema.validate(spec, schema("spec.schema.json"))
    profiles = {tuple(p["selector"]["names"]): p for p in spec["hostProfiles"]}
    # argument order differs between gpu-01 and gpu-02; the settings are the same
    assert set(profiles) == {("gpu-01", "gpu-02"), ("pt-01",)}
    assert profiles[("gpu-01", "gpu-02")]["vgpu"] == {"placement": "consolidated"}
    assert profiles[("pt-01",)]["kernel"]["pciStub"] == ["10de:13ba", "10de:0fbc"]
    vms = {v["name"]: v for v in spec["vms"]}
    assert set(vms) == {"cad-01", "render-01"}
    assert vms["cad-01"]["passthrough"] == {"host": "pt-01", "devices": ["pci_0000_03_00_0"]}
    assert vms["render-01"]["vgpu"] == {"type": "nvidia-18", "instances": 2,
                                        "secondaryDisplay": "none",
                                        "driverParams": "enable_uvm=1"}
    text = dump_spec(spec, header="exported")
    assert text.startswith("# exported\n") and yaml.safe_load(text) == spec


def test_json_output_validates_against_observed_schema():
    data = observed_to_json(fleet())
    jsonschema.validate(data, schema("observed.schema.json"))
    assert data["stats"]["engine_requests"] == 3
    assert data["hosts"][0]["devices"][0]["mdev_types"][0]["max_instances"] == 4


def test_schema_rejects_wrong_shapes():
    data = observed_to_json(fleet())
    data["hosts"][0]["cpu_vendor"] = "via"
    v = jsonschema.Draft202012Validator(schema("observed.schema.json"))
    assert list(v.iter_errors(data))


def test_text_summary():
    text = render_text(fleet())
    assert "4 hosts" in text and "pci_0000_03_00_0 10de:13ba" in text and "-> cad-01" in text
    assert "render-01 up on gpu-01: vgpu 2xnvidia-18" in text
    assert "nvidia-18 GRID M60-2Q: 6" in text          # 3 free on each of two hosts
    assert "web-01" not in text and "pci_0000_01_00_0" not in text
    assert text.rstrip().endswith("engine requests: 3, hosts probed: 0, failures: 0, seconds: 0.50")


def test_persisted_args_come_from_the_newest_non_rescue_entry():
    from reconciler.commands.observe import persisted_args
    from reconciler.model.facts import BootEntry, ProbeFacts

    mid = "0d7c5e1fa2b34c6d8e9f0a1b2c3d4ee2"
    entries = (BootEntry(f"{mid}-0-rescue", f"/vmlinuz-0-rescue-{mid}", "ro stale=1"),
               BootEntry(f"{mid}-5.14.0-70.13.1.el9_0.x86_64", None, "ro old=1"),
               BootEntry(f"{mid}-5.14.0-427.13.1.el9_4.x86_64", None, "ro intel_iommu=on"),
               BootEntry(f"{mid}-5.14.0-362.8.1.el9_3.x86_64", None, "ro middle=1"))
    assert persisted_args(ProbeFacts("h", boot_entries=entries)) == "ro intel_iommu=on"
    assert persisted_args(ProbeFacts("h", boot_entries=entries[:1],
                                     etc_kernel_cmdline="ro k=1")) == "ro k=1"
    assert persisted_args(ProbeFacts("h", status="unknown", reason="x")) is None


def test_kernel_view_merges_every_profile_like_the_planner():
    from reconciler.commands.observe import kernel_views
    from reconciler.spec.model import (DesiredState, EngineSpec, HostProfile, HostSelector,
                                       KernelSpec)

    desired = DesiredState(engine=EngineSpec(lab_fleet="demo"), host_profiles=(
        HostProfile("base", HostSelector(cluster="gpu"), kernel=KernelSpec(iommu=True)),
        HostProfile("pt", HostSelector(names=("pt-*",)),
                    kernel=KernelSpec(iommu_passthrough=True, blacklist_nouveau=False)),
        HostProfile("off", HostSelector(cluster="other"), kernel=KernelSpec(iommu=False))))
    observed = fleet()
    views = {h: {v.key: v for v in vs} for h, vs in kernel_views(desired, observed).items()}
    # pt-01 (AMD) gets the first profile's IOMMU and the second's iommu=pt and nouveau rule.
    assert views["pt-01"]["amd_iommu"].desired == "amd_iommu=on"
    assert views["pt-01"]["amd_iommu"].configured == "amd_iommu=on"
    assert views["pt-01"]["iommu"].desired == "iommu=pt"
    assert views["pt-01"]["rdblacklist"].desired is None
    assert views["gpu-01"].keys() == {"intel_iommu"}
    # iommu: false must drop both vendors' arguments, whatever the host's vendor.
    assert {k: v.desired for k, v in views["plain-01"].items()} == {
        "intel_iommu": None, "amd_iommu": None}


def test_text_names_down_vms_that_hold_a_gpu():
    from dataclasses import replace
    observed = fleet()
    pt = next(h for h in observed.hosts if h.name == "pt-01")
    idle = replace(pt, devices=tuple(replace(d, vm=None) for d in pt.devices))
    observed = replace(observed, hosts=tuple(idle if h is pt else h for h in observed.hosts))
    text = render_text(observed)
    assert "pci_0000_03_00_0 10de:13ba" in text
    assert "(attached to cad-01, not running)" in text
    assert "-> cad-01" not in text


def test_export_of_args_set_outside_the_engine_plans_nothing(tmp_path):
    """Arguments a host boots with from its own GRUB config are not the engine's: the export
    leaves them unmanaged, so planning it neither cycles the host nor blocks it."""
    from dataclasses import replace

    from reconciler.model.facts import BootEntry, ProbeFacts
    from reconciler.plan import plan
    from reconciler.spec import load_desired

    grub = "ro rdblacklist=nouveau intel_iommu=on iommu=pt quiet"
    observed = fleet()
    hosts = tuple(replace(h, custom_kernel_cmdline="", reported_kernel_cmdline=grub)
                  if h.name == "gpu-02" else h for h in observed.hosts)
    observed = replace(observed, hosts=hosts, probes=(ProbeFacts(
        "gpu-02", proc_cmdline=grub, boot_entries=(BootEntry("m-5.14.0", None, grub),)),))
    path = tmp_path / "exported.yaml"
    path.write_text(dump_spec(export_spec(observed, {"lab": {"fleet": "demo"}})))
    result = plan(load_desired([str(path)]), observed)
    assert not [a for a in result.actions if a.target == "host:gpu-02"]
    assert not [d for d in result.drift if d.key == "host:gpu-02"]


def test_kernel_block_says_exactly_what_the_line_has_or_leaves_it_out():
    # the host's own vendor decides which switch is `iommu: true`; the other one is an extra arg
    assert kernel_from_cmdline("intel_iommu=on amd_iommu=on", "amd") == {
        "iommu": True}                               # intel_iommu=on: owned by iommu, left out
    assert kernel_from_cmdline("amd_iommu=on", "intel") == {"extraArgs": ["amd_iommu=on"]}
    # a key set twice cannot be said by a spec (extraArgs replace other values of their key)
    assert kernel_from_cmdline("pci=realloc pci=noaer quiet quiet nosmt", "intel") == {
        "extraArgs": ["nosmt"]}
    assert kernel_from_cmdline("rdblacklist=nouveau rdblacklist=nouveau", "intel") == {}
    # an extra arg that a managed option would rewrite stays unmanaged
    assert kernel_from_cmdline("iommu=pt iommu.strict=1 rdblacklist=nouveau "
                               "modprobe.blacklist=nouveau", "intel") == {
        "iommuPassthrough": True, "blacklistNouveau": True, "extraArgs": ["iommu.strict=1"]}
    # pci-stub ids kernel.pciStub cannot hold (sub-vendor form) are kept verbatim as an extra arg
    assert kernel_from_cmdline("pci-stub.ids=10de:13ba:1028:0000", "intel") == {
        "extraArgs": ["pci-stub.ids=10de:13ba:1028:0000"]}


def test_exported_vms_keep_consoles_and_skip_the_legacy_property():
    from reconciler.export import export_vm

    spice_only = Vm("v", "vdi", "gpu", "up", graphics=(GraphicsConsole("g", "spice"),),
                    mediated_devices=(MediatedDevice("m", "nvidia-18"),))
    assert export_vm(spice_only)["vgpu"] == {"type": "nvidia-18", "instances": 1,
                                             "secondaryDisplay": "vnc", "console": "keep"}
    both = Vm("v", "vdi", "gpu", "up", graphics=(GraphicsConsole("g", "spice"),
                                                 GraphicsConsole("h", "vnc")),
              mediated_devices=(MediatedDevice("m", "nvidia-18"),))
    assert "console" not in export_vm(both)["vgpu"]
    legacy = Vm("v", "old", "gpu", "down", legacy_mdev_property="nvidia-18")
    assert export_vm(legacy) is None                 # a spec vGPU there would be a blocker


def test_modprobe_and_manager_come_from_the_probe():
    from reconciler.export import host_settings
    from reconciler.model.facts import ModprobeFile, ProbeFacts

    ours = ModprobeFile("/etc/modprobe.d/gpu-reconciler.conf", blacklist=("nouveau",),
                        options=(("nouveau", "modeset=0"),))
    theirs = ModprobeFile("/etc/modprobe.d/nvidia.conf", blacklist=("nvidiafb",))
    probe = ProbeFacts("gpu-01", modprobe_files=(theirs, ours),
                       loaded_modules=("nvidia", "nvidia_vgpu_vfio"),
                       vgpu_manager_service="active")
    host = fleet().hosts[0]
    settings = host_settings(host, probe)
    assert settings["modprobe"] == {"blacklist": ["nouveau"], "options": {"nouveau": ["modeset=0"]}}
    assert settings["vgpu"] == {"manager": "required", "placement": "consolidated"}
    bare = ProbeFacts("gpu-01", vgpu_manager_service="not-found")
    assert host_settings(host, bare)["vgpu"]["manager"] == "absent"
    half = ProbeFacts("gpu-01", loaded_modules=("nvidia_vgpu_vfio",),
                      vgpu_manager_service="failed")
    assert "manager" not in host_settings(host, half)["vgpu"]
    # not probed: neither is exported
    assert "modprobe" not in host_settings(host) and "manager" not in host_settings(host)["vgpu"]
