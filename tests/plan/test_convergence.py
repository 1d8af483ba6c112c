"""Property: applying a plan in the pure model and planning again yields no further changes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.plan import plan
from tests.support.model_apply import apply_to_facts
from reconciler.plan.render_json import render_json
from tests.plan.factsload import desired_from, load_cases, observed_from

CLUSTERS = [
    {"id": "c1", "name": "gpu", "cpu_type": "Intel Cascadelake Server Family",
     "architecture": "x86_64"},
    {"id": "c2", "name": "amdc", "cpu_type": "Secure AMD EPYC", "architecture": "x86_64"},
]
VENDOR = {"gpu": "intel", "amdc": "amd"}
TOKENS = ["intel_iommu=on", "amd_iommu=on", "rdblacklist=nouveau", "iommu=pt", "quiet",
          "pci-stub.ids=10de:1eb8", "foo=1"]
TYPES = ["nvidia-18", "nvidia-22"]
MAX = {"nvidia-18": 4, "nvidia-22": 1}


@st.composite
def gpu_device(draw: Any, index: int) -> dict[str, Any]:
    if draw(st.booleans()):
        locked = draw(st.sampled_from([None, *TYPES]))
        types = []
        for t in TYPES:
            if locked is None:
                avail = MAX[t]
            elif locked == t:
                avail = draw(st.integers(0, MAX[t] - 1))
            else:
                avail = 0
            types.append({"name": t, "available_instances": avail, "max_instances": MAX[t]})
        return {"name": f"pci_0000_{index:02x}_00_0", "iommu_group": index, "driver": "nvidia",
                "vendor_id": "10de", "product_id": "13f2", "mdev_types": types}
    driver = draw(st.sampled_from(["vfio-pci", "vfio-pci", None, "nouveau"]))
    return {"name": f"pci_0000_{index:02x}_00_0", "iommu_group": index, "driver": driver,
            "vendor_id": "10de", "product_id": "1eb8"}


@st.composite
def scenario(draw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    n_hosts = draw(st.integers(1, 4))
    hosts, probes = [], []
    for i in range(n_hosts):
        cluster = draw(st.sampled_from(["gpu", "amdc"]))
        name = f"h{i}"
        devices = [draw(gpu_device(i * 4 + j + 1)) for j in range(draw(st.integers(0, 3)))]
        booted = " ".join(draw(st.lists(st.sampled_from(TOKENS), max_size=4, unique=True)))
        hosts.append({
            "id": f"id-{i}", "name": name, "cluster": cluster,
            "status": draw(st.sampled_from(["up", "up", "maintenance"])),
            "cpu_vendor": VENDOR[cluster],
            "custom_kernel_cmdline": " ".join(draw(st.lists(st.sampled_from(TOKENS), max_size=3,
                                                            unique=True))),
            "reported_kernel_cmdline": booted,
            "device_passthrough": draw(st.sampled_from([True, True, False])),
            "vgpu_placement": draw(st.sampled_from(["consolidated", "separated"])),
            "devices": devices})
        if draw(st.booleans()):
            probes.append({
                "host": name, "proc_cmdline": booted,
                "initramfs_blacklist": draw(st.sampled_from([[], ["nouveau"]])),
                "loaded_modules": draw(st.lists(st.sampled_from(
                    ["nouveau", "nvidia", "nvidia_vgpu_vfio"]), unique=True)),
                "vgpu_manager_service": draw(st.sampled_from(["active", "inactive"]))})
    vms, specs = [], []
    for i in range(draw(st.integers(0, 5))):
        name = f"vm{i}"
        host = draw(st.sampled_from(hosts))
        status = draw(st.sampled_from(["up", "down"]))
        pinned = draw(st.sampled_from([[], [host["name"]]]))
        mdevs = [{"id": f"m{i}-{k}", "mdev_type": draw(st.sampled_from(TYPES)),
                  "nodisplay": draw(st.booleans())} for k in range(draw(st.integers(0, 2)))]
        attached = []
        free = [d for d in host["devices"] if "vm" not in d and not d.get("mdev_types")]
        if pinned and free and draw(st.booleans()):
            free[0]["vm"] = name
            attached.append({"name": free[0]["name"], "host": host["name"]})
        vms.append({"id": f"v{i}", "name": name, "cluster": host["cluster"], "status": status,
                    "host_devices": attached,
                    "host": host["name"] if status == "up" else None, "pinned_hosts": pinned,
                    "affinity": "pinned" if pinned else "migratable",
                    "graphics": [{"id": f"g{i}", "protocol": draw(st.sampled_from(["vnc", "spice"]))}],
                    "mediated_devices": mdevs})
        kind = draw(st.sampled_from(["none", "passthrough", "vgpu", "both"]))
        spec: dict[str, Any] = {"name": name,
                                "restart": draw(st.sampled_from(["whenDown", "allowed", "never"]))}
        if kind in ("passthrough", "both") and host["devices"]:
            devs = draw(st.lists(st.sampled_from([d["name"] for d in host["devices"]]),
                                 min_size=1, max_size=2, unique=True))
            spec["passthrough"] = {"host": host["name"], "devices": devs}
        if kind in ("vgpu", "both"):
            spec["vgpu"] = {"type": draw(st.sampled_from(TYPES)),
                            "instances": draw(st.integers(1, 3)),
                            "secondary_display": draw(st.sampled_from(["vnc", "none"]))}
        if kind != "none" or draw(st.booleans()):
            specs.append(spec)
    profiles = []
    for i in range(draw(st.integers(0, 2))):
        kernel = draw(st.one_of(st.none(), st.fixed_dictionaries({
            "iommu": st.sampled_from([None, True, False]),
            "iommu_passthrough": st.sampled_from([None, True, False]),
            "blacklist_nouveau": st.sampled_from([None, True, False]),
            "pci_stub": st.sampled_from([None, [], ["10de:1eb8"]]),
            "extra_args": st.sampled_from([[], ["foo=2"], ["nosmt"]])})))
        profile: dict[str, Any] = {
            "name": f"p{i}",
            "selector": {"cluster": draw(st.sampled_from([None, "gpu", "amdc"])),
                         "names": draw(st.sampled_from([[], ["h*"], ["h0", "h2"]]))},
            "rollout": {"max_unavailable": draw(st.integers(1, 3)),
                        "reboot": draw(st.sampled_from(["allowed", "allowed", "never"]))}}
        if kernel is not None:
            profile["kernel"] = kernel
        if draw(st.booleans()):
            profile["modprobe"] = {"blacklist": ["nouveau"], "options": {"nouveau": ["modeset=0"]}}
        if draw(st.booleans()):
            profile["vgpu"] = {"placement": draw(st.sampled_from(["consolidated", "separated"]))}
        profiles.append(profile)
    observed = {"clusters": CLUSTERS, "hosts": hosts, "vms": vms, "probes": probes}
    return {"host_profiles": profiles, "vms": specs}, observed


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
@pytest.mark.slow        # Hypothesis: 150 generated fleets
def test_applying_a_plan_converges(data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    desired_data, observed_data = data
    desired = desired_from(desired_data)
    observed = observed_from(observed_data)
    first = plan(desired, observed)
    after = apply_to_facts(first, observed)
    second = plan(desired, after)
    assert [f"{a.kind} {a.target}" for a in second.actions] == [], (
        [f"{a.kind} {a.target}: {a.description}" for a in first.actions])


def _table_cases() -> list[Any]:
    """The planner's table cases that start from nothing applied."""
    return [pytest.param(case, id=f"{path.stem}: {case['name']}")
            for path in sorted((Path(__file__).parent / "cases").glob("*.yaml"))
            for case in load_cases(path) if not case.get("applied")]


@pytest.mark.parametrize("case", _table_cases())
def test_table_cases_converge(case: dict[str, Any]) -> None:
    """The planner's table cases (cases/*.yaml) converge in one apply too, deterministically."""
    desired = desired_from(case.get("desired"))
    observed = observed_from(case.get("observed"))
    first = plan(desired, observed)
    second = plan(desired, apply_to_facts(first, observed))
    assert [f"{a.kind} {a.target}" for a in second.actions] == [], (
        [f"{a.kind} {a.target}: {a.description}" for a in first.actions])


@settings(max_examples=60, deadline=None)
@given(scenario())
@pytest.mark.slow        # Hypothesis: generated fleets
def test_plan_is_deterministic(data: tuple[dict[str, Any], dict[str, Any]]) -> None:
    desired_data, observed_data = data
    one = render_json(plan(desired_from(desired_data), observed_from(observed_data)))
    two = render_json(plan(desired_from(desired_data), observed_from(observed_data)))
    assert one == two
