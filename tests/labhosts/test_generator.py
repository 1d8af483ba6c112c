"""The fleet generator: sizes, consistency with host capacity, determinism."""
from __future__ import annotations

import math
import time
from collections import Counter, defaultdict

import pytest

from reconciler_lab import catalogue
from reconciler_lab.fleet import LabFleet, dump_fleet, fleet_from_dict, generate_fleet


def _check_consistent(fleet: LabFleet) -> None:
    hosts = {h.name: h for h in fleet.hosts}
    clusters = {c.name for c in fleet.clusters}
    claimed: Counter[tuple[str, str]] = Counter()
    running: dict[str, Counter[str]] = defaultdict(Counter)
    for vm in fleet.vms:
        assert vm.cluster in clusters
        if vm.status == "up":
            assert vm.host in hosts and hosts[vm.host].cluster == vm.cluster
        for name in vm.host_devices:
            assert len(vm.pinned_hosts) == 1, vm
            host = hosts[vm.pinned_hosts[0]]
            assert any(d.name == name for d in host.devices), (vm.name, name)
            claimed[(host.name, name)] += 1
        if vm.mediated_devices:
            assert not vm.host_devices
            if vm.status == "up":
                for m in vm.mediated_devices:
                    running[vm.host or ""][m.mdev_type] += 1
    assert all(n == 1 for n in claimed.values()), "a passthrough device is attached twice"
    # Running vGPUs fit: one type per GPU, so each type needs ceil(n / max) whole GPUs.
    for host_name, per_type in running.items():
        host = hosts[host_name]
        models = {catalogue.model(g.model) for g in host.gpus}
        assert len(models) == 1
        model = models.pop()
        gpus_needed = 0
        for mdev_type, n in per_type.items():
            t = next(t for t in model.mdev_types if t.name == mdev_type)
            gpus_needed += math.ceil(n / t.max_instances)
        assert gpus_needed <= len(host.gpus), (host_name, per_type)


def test_sizes_and_mix() -> None:
    fleet = generate_fleet(120, 4, 900, seed=3)
    assert len(fleet.hosts) == 120 and len(fleet.vms) == 900
    assert len(fleet.clusters) == 3
    sizes = Counter(h.cluster for h in fleet.hosts)
    assert max(sizes.values()) <= 50
    assert any("AMD" in (c.cpu_type or "") for c in fleet.clusters)
    assert all(len(h.gpus) == 4 for h in fleet.hosts)
    models = Counter(g.model for h in fleet.hosts for g in h.gpus)
    assert {"tesla-m60", "tesla-t4", "a2", "h100-pcie", "quadro-k4200"} <= set(models)
    status = Counter(v.status for v in fleet.vms)
    assert status["up"] > 100 and status["down"] > 100
    assert any(v.mediated_devices for v in fleet.vms)
    assert any(v.host_devices for v in fleet.vms)
    assert any(h.os_release == "rhel8" for h in fleet.hosts)
    assert any(h.reinstallation_required for h in fleet.hosts)
    _check_consistent(fleet)


def test_capacity_pressure_keeps_vms_down() -> None:
    # Many VMs on few GPUs: placement must stop at capacity rather than overfill.
    fleet = generate_fleet(6, 1, 400, seed=1)
    _check_consistent(fleet)
    assert any(v.mediated_devices and v.status == "down" for v in fleet.vms)


def test_deterministic_by_seed() -> None:
    assert generate_fleet(30, 2, 100, seed=7) == generate_fleet(30, 2, 100, seed=7)
    assert generate_fleet(30, 2, 100, seed=7) != generate_fleet(30, 2, 100, seed=8)


def test_round_trip_generated() -> None:
    import yaml
    fleet = generate_fleet(20, 3, 60, seed=2)
    assert fleet_from_dict(yaml.safe_load(dump_fleet(fleet))) == fleet


@pytest.mark.parametrize("hosts, gpus, vms", [(0, 4, 0), (1, 0, 5)])
def test_edge_sizes(hosts: int, gpus: int, vms: int) -> None:
    fleet = generate_fleet(hosts, gpus, vms)
    assert len(fleet.hosts) == hosts
    _check_consistent(fleet)


def test_large_fleet_sanity(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.perf_counter()
    fleet = generate_fleet(1000, 8, 10_000)
    seconds = time.perf_counter() - started
    assert len(fleet.hosts) == 1000 and len(fleet.vms) == 10_000
    assert sum(len(h.gpus) for h in fleet.hosts) == 8000
    _check_consistent(fleet)
    with capsys.disabled():   # a figure for the reader, never an assertion
        print(f"\ngenerate_fleet(1000, 8, 10000): {seconds:.2f} s, "
              f"{sum(len(h.devices) for h in fleet.hosts)} host devices")
