"""Prometheus series of the fleet GPU map, collected from the last pass's map at scrape time.

A custom collector reads one immutable FleetMap reference, so a scrape never sees half of an
update and series of clusters, types or GPUs that went away simply stop (no stale gauges).

Label cardinality (docs/fleet-map.md): cluster x type for seats and headroom (types come from the
hardware's catalogue, a few dozen per GPU model), cluster x mode and cluster x occupancy band for
GPU counts, and one series per physical GPU for occupancy, only up to `per_gpu_limit` GPUs
(default 10,000); past it the per-GPU series are left out and
`gpu_reconciler_gpu_occupancy_series_dropped` says how many. No label carries a VM name or an mdev
UUID, so VMs starting and stopping never create series.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from reconciler.fleetmap.model import MODES, FleetMap

PREFIX = "gpu_reconciler"
DEFAULT_PER_GPU_LIMIT = 10_000
BANDS = ("idle", "low", "high", "full")      # 0, (0, 50 %), [50 %, 100 %), 100 %


def band(occupancy: float) -> str:
    if occupancy <= 0:
        return "idle"
    if occupancy >= 1:
        return "full"
    return "low" if occupancy < 0.5 else "high"


class FleetCollector(Collector):
    def __init__(self, per_gpu_limit: int = DEFAULT_PER_GPU_LIMIT) -> None:
        self.per_gpu_limit = per_gpu_limit
        self._map: FleetMap | None = None
        self._lock = threading.Lock()

    def update(self, fleet: FleetMap) -> None:
        with self._lock:
            self._map = fleet

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())          # series depend on the fleet: nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            fm = self._map
        if fm is None:
            return
        seats = {k: GaugeMetricFamily(f"{PREFIX}_vgpu_seats_{k}", doc, labels=["cluster", "type"])
                 for k, doc in (("used", "vGPU instances running, per type and cluster"),
                                ("free", "vGPU instances that could still start (idle GPUs count "
                                         "for every type they offer)"),
                                ("capacity", "used + free"))}
        for t in fm.totals:
            if t.cluster is None:
                continue
            seats["used"].add_metric([t.cluster, t.type], t.used)
            seats["free"].add_metric([t.cluster, t.type], t.free)
            seats["capacity"].add_metric([t.cluster, t.type], t.capacity)
        yield from seats.values()
        room = GaugeMetricFamily(f"{PREFIX}_vgpu_headroom_vms",
                                 "More VMs of the type that fit (one type per GPU, hosts up, the "
                                 "spec's instances per VM)", labels=["cluster", "type"])
        for r in fm.headroom:
            room.add_metric([r.cluster, r.type], r.vms)
        yield room
        modes = GaugeMetricFamily(f"{PREFIX}_gpus", "Physical GPUs by mode",
                                  labels=["cluster", "mode"])
        bands = GaugeMetricFamily(f"{PREFIX}_gpus_by_occupancy",
                                  "Physical GPUs by occupancy band (idle, low <50 %, high, full)",
                                  labels=["cluster", "band"])
        occupancy = GaugeMetricFamily(f"{PREFIX}_gpu_occupancy_ratio",
                                      "Share of one physical GPU in use (vGPU seats; 1 when passed "
                                      "through or held by a host driver)",
                                      labels=["cluster", "host", "gpu"])
        flags = GaugeMetricFamily(f"{PREFIX}_fleet_flags", "Problems shown on the fleet map",
                                  labels=["kind"])
        flag_count: Counter[str] = Counter(f.kind for f in fm.flags)
        exported = dropped = 0
        for c in fm.clusters:
            by_mode: Counter[str] = Counter()
            by_band: Counter[str] = Counter()
            for h in c.hosts:
                flag_count.update(f.kind for f in h.flags)
                for g in h.gpus:
                    by_mode[g.mode] += 1
                    flag_count.update(f.kind for f in g.flags)
                    occ = g.occupancy
                    if occ is None:
                        continue
                    by_band[band(occ)] += 1
                    if exported < self.per_gpu_limit:
                        occupancy.add_metric([c.name, h.name, g.address], occ)
                        exported += 1
                    else:
                        dropped += 1
            for m in MODES:
                modes.add_metric([c.name, m], by_mode[m])
            for b in BANDS:
                bands.add_metric([c.name, b], by_band[b])
        for kind in ("blocked", "drift", "pending", "unmanaged", "check"):
            flags.add_metric([kind], flag_count[kind])
        yield modes
        yield bands
        yield occupancy
        yield flags
        yield GaugeMetricFamily(f"{PREFIX}_gpu_occupancy_series_dropped",
                                "Per-GPU occupancy series left out past the per-GPU limit",
                                value=dropped)
