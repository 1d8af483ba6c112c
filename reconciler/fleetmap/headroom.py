"""Seats per vGPU type, and how many more VMs of a type fit where (one type per physical GPU).

A GPU running a type offers `seats_total - seats_used` more of it and nothing of any other type;
an idle GPU offers every type it lists, each up to that type's maximum, but only one type at a
time. The headroom of a type is counted as if only VMs of that type were added: idle GPUs are
shared by all types, so two types' headrooms are alternatives, not a sum.

Where the next instance goes on a host is what vdsm does there (lib/vdsm/common/hostdev.py,
`_suitable_device_for_mdev_type`): with `consolidated` (vdsm's compact) the first GPU in order
that runs the type with room or is idle; with `separated` the first GPU not yet running the type,
falling back to compact. A VM's instances may spread over the host's GPUs, but not over hosts.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from reconciler.fleetmap.model import ClusterView, GpuView, Headroom, HostView, Placement, TypeTotals

NEXT_HOSTS = 5


def _free_on(g: GpuView, mdev_type: str) -> int:
    """Seats of `mdev_type` one more VM could take on this GPU."""
    if g.mode == "vgpu":
        if g.vgpu_type != mdev_type or g.seats_total is None:
            return 0
        return max(g.seats_total - (g.seats_used or 0), 0)
    if g.mode == "idle":
        offer = next((o for o in g.offers if o.type == mdev_type), None)
        return offer.seats or 0 if offer else 0
    return 0


def _type_names(gpus: Iterable[GpuView]) -> dict[str, str | None]:
    names: dict[str, str | None] = {}
    for g in gpus:
        if g.vgpu_type:
            names[g.vgpu_type] = g.vgpu_type_name or names.get(g.vgpu_type)
        for o in g.offers:
            if o.name or o.type not in names:
                names[o.type] = o.name or names.get(o.type)
    return names


def totals(clusters: Iterable[ClusterView]) -> tuple[TypeTotals, ...]:
    rows: list[TypeTotals] = []
    fleet: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    names: dict[str, str | None] = {}
    for c in clusters:
        gpus = [g for h in c.hosts for g in h.gpus]
        cnames = _type_names(gpus)
        names.update({k: v for k, v in cnames.items() if v or k not in names})
        acc: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
        for g in gpus:
            if g.mode == "vgpu" and g.vgpu_type:
                a = acc[g.vgpu_type]
                a[0] += g.seats_used or 0
                a[1] += max((g.seats_total or 0) - (g.seats_used or 0), 0)
                a[2] += g.seats_total or 0
                a[3] += 1
            elif g.mode == "idle":
                for o in g.offers:
                    a = acc[o.type]
                    a[1] += o.seats or 0
                    a[2] += o.seats or 0
                    a[4] += 1
        for t in sorted(acc):
            used, free, cap, running, idle = acc[t]
            rows.append(TypeTotals(c.name, t, cnames.get(t), used, free, cap, running, idle))
            f = fleet[t]
            for i, v in enumerate(acc[t]):
                f[i] += v
    rows += [TypeTotals(None, t, names.get(t), *fleet[t]) for t in sorted(fleet)]
    return tuple(rows)


def _next_gpu(host: HostView, mdev_type: str) -> str | None:
    candidates = [g for g in host.gpus if _free_on(g, mdev_type) > 0]
    if not candidates:
        return None
    if host.vgpu_placement == "separated":
        idle = [g for g in candidates if g.mode == "idle"]
        if idle:
            return idle[0].address
    return candidates[0].address


def headroom(clusters: Iterable[ClusterView],
             instances: Mapping[str, int] | None = None) -> tuple[Headroom, ...]:
    instances = instances or {}
    out: list[Headroom] = []
    for c in clusters:
        gpus = [g for h in c.hosts for g in h.gpus]
        names = _type_names(gpus)
        for t in sorted(names):
            k = max(instances.get(t, 1), 1)
            places: list[tuple[bool, int, str, Placement]] = []
            total = 0
            for h in c.hosts:
                if h.status != "up":
                    continue      # the scheduler only places VMs on hosts that are up
                seats = sum(_free_on(g, t) for g in h.gpus)
                fits = seats // k
                gpu = _next_gpu(h, t)
                if fits and gpu:
                    total += fits
                    running = any(g.mode == "vgpu" and g.vgpu_type == t for g in h.gpus)
                    places.append((not running, -fits, h.name, Placement(h.name, gpu, fits)))
            places.sort(key=lambda p: p[:3])
            out.append(Headroom(c.name, t, names.get(t), k, total,
                                tuple(p[3] for p in places[:NEXT_HOSTS])))
    return tuple(out)
