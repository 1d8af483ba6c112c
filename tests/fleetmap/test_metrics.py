"""The fleet map's Prometheus series: seats, headroom, GPUs per mode and occupancy, bounded."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.bench_fleetmap import build_map
from reconciler.controller.fleet_metrics import FleetCollector
from reconciler.controller.metrics import ControllerMetrics


def samples(metrics: ControllerMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_no_fleet_series_before_the_first_map() -> None:
    assert not any(n.startswith("gpu_reconciler_vgpu_seats") for n in samples(ControllerMetrics()))


def test_series_of_a_map() -> None:
    metrics = ControllerMetrics()
    fm = build_map(20, gpus=8, vms_per_host=10)
    metrics.fleet.update(fm)
    got = samples(metrics)
    used = {(lab["cluster"], lab["type"]): v for lab, v in got["gpu_reconciler_vgpu_seats_used"]}
    # 20 hosts over 10 clusters: 2 per cluster, 10 M60-2Q VMs per vGPU host; the hosts of cl04
    # and cl09 are passthrough hosts
    assert used[("cl00", "nvidia-18")] == 20 and ("cl04", "nvidia-18") not in used
    cap = {(lab["cluster"], lab["type"]): v for lab, v in got["gpu_reconciler_vgpu_seats_capacity"]}
    free = {(lab["cluster"], lab["type"]): v for lab, v in got["gpu_reconciler_vgpu_seats_free"]}
    assert all(cap[k] == used.get(k, 0) + free[k] for k in cap)
    modes = {(lab["cluster"], lab["mode"]): v for lab, v in got["gpu_reconciler_gpus"]}
    assert modes[("cl04", "passthrough")] == 12 and modes[("cl04", "idle")] == 4
    assert modes[("cl00", "vgpu")] == 6 and modes[("cl00", "idle")] == 10
    total = sum(v for _, v in got["gpu_reconciler_gpus"])
    assert total == 160 == sum(v for _, v in got["gpu_reconciler_gpus_by_occupancy"])
    occ = got["gpu_reconciler_gpu_occupancy_ratio"]
    assert len(occ) == 160 and {tuple(sorted(lab)) for lab, _ in occ} == {("cluster", "gpu", "host")}
    assert got["gpu_reconciler_gpu_occupancy_series_dropped"] == [({}, 0.0)]
    room = {(lab["cluster"], lab["type"]): v for lab, v in got["gpu_reconciler_vgpu_headroom_vms"]}
    # per vGPU host: 2 seats left on its third GPU, 4 on each of its 5 idle GPUs
    assert room[("cl00", "nvidia-18")] == 2 * (2 + 5 * 4)
    # no label can carry a VM name or an mdev UUID
    labels = {k for series in got.values() for lab, _ in series for k in lab}
    assert labels <= {"cluster", "type", "mode", "band", "host", "gpu", "kind", "class",
                      "result", "outcome", "le"}


def test_per_gpu_series_stop_at_the_limit() -> None:
    metrics = ControllerMetrics()
    metrics.registry.unregister(metrics.fleet)
    metrics.fleet = FleetCollector(per_gpu_limit=50)
    metrics.registry.register(metrics.fleet)
    metrics.fleet.update(build_map(20))
    got = samples(metrics)
    assert len(got["gpu_reconciler_gpu_occupancy_ratio"]) == 50
    assert got["gpu_reconciler_gpu_occupancy_series_dropped"] == [({}, 110.0)]
    assert sum(v for _, v in got["gpu_reconciler_gpus_by_occupancy"]) == 160
