"""The fleet map's data: frozen, JSON-shaped (schemas/fleet.schema.json documents `to_dict`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

# passthrough: a VM holds the whole GPU; vgpu: it runs vGPUs of one type; idle: nothing uses it
# and it is ready for either; host: a host driver (nouveau, or nvidia without vGPU types) drives
# it; unknown: the engine lists it but nothing says what it does (host not probed, not up).
Mode = Literal["passthrough", "vgpu", "idle", "host", "unknown"]
MODES: tuple[Mode, ...] = ("passthrough", "vgpu", "idle", "host", "unknown")
# A problem shown where it applies: the plan's drift classes, plus what the map itself checks.
FlagKind = Literal["blocked", "drift", "pending", "unmanaged", "check"]
# How a VM was found on a GPU (docs/fleet-map.md, "the join").
Via = Literal["hostdev", "mdev", "mdev-legacy", "nvidia-smi", "vf-hostdev", "engine"]


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    message: str
    key: str | None = None               # the plan's key ("vm:cad-01", "host:m60-02"), if any


@dataclass(frozen=True)
class GpuVm:
    """A VM on a GPU: passthrough holder, or one vGPU instance (several instances: several)."""

    name: str                            # VM name; an mdev no VM owns: "?<uuid>"
    status: str | None                   # the VM's status; None for an unknown owner
    via: Via
    mdev_uuid: str | None = None
    parent: str | None = None            # mdev parent / VF address when not the GPU itself


@dataclass(frozen=True)
class SmiFigures:
    """nvidia-smi's figures for one physical GPU."""

    memory_used_mib: int | None
    memory_total_mib: int | None
    utilization_percent: int | None
    vgpus_active: int | None


@dataclass(frozen=True)
class Offer:
    """A vGPU type a GPU can run, and how many of it fit on the GPU when it runs only that."""

    type: str
    name: str | None
    seats: int | None


@dataclass(frozen=True)
class GpuView:
    address: str                         # 0000:05:00.0
    device: str                          # pci_0000_05_00_0 (the engine's name)
    model: str                           # product name, e.g. "GM204GL [Tesla M60]"
    pci_id: str | None                   # 10de:13f2
    driver: str | None
    iommu_group: int | None
    mode: Mode
    vgpu_type: str | None = None         # nvidia-18 (mode vgpu)
    vgpu_type_name: str | None = None    # GRID M60-2Q
    seats_used: int | None = None
    seats_total: int | None = None       # of vgpu_type on this GPU (the board limit on VF boards)
    vms: tuple[GpuVm, ...] = ()
    smi: SmiFigures | None = None
    flags: tuple[Flag, ...] = ()
    offers: tuple[Offer, ...] = ()       # vGPU types it can run (idle: any one of them)
    backend: str | None = None           # mdev | mdev-vf | vendor-vfio | None

    @property
    def occupancy(self) -> float | None:
        """Share of the GPU in use: seats for vGPU, 1 for passthrough and host, 0 when idle."""
        if self.mode == "vgpu" and self.seats_total:
            return min((self.seats_used or 0) / self.seats_total, 1.0)
        if self.mode in ("passthrough", "host"):
            return 1.0
        if self.mode == "idle":
            return 0.0
        return None


@dataclass(frozen=True)
class HostView:
    name: str
    cluster: str
    status: str
    cpu_vendor: str | None               # the engine's (derived from CPU type names)
    probe_cpu_vendor: str | None         # the host's own /proc/cpuinfo
    vgpu_placement: str | None
    passthrough_enabled: bool
    probed: bool                         # a probe answered for it
    probe_note: str | None               # why facts are missing: probe failed, nvidia-smi ...
    driver_version: str | None
    gpus: tuple[GpuView, ...]
    flags: tuple[Flag, ...] = ()
    vgpu_vms_unplaced: tuple[str, ...] = ()   # running vGPU VMs whose GPU is not known


@dataclass(frozen=True)
class ClusterView:
    name: str
    cpu_type: str | None
    hosts: tuple[HostView, ...]


@dataclass(frozen=True)
class TypeTotals:
    """Seats of one vGPU type in one cluster (or the whole fleet: cluster None).

    free counts seats on GPUs already running the type plus every seat of idle GPUs that offer
    it; an idle GPU counts for every type it offers, so the free seats of two types are
    alternatives, not a sum (one type per GPU)."""

    cluster: str | None
    type: str
    name: str | None
    used: int
    free: int
    capacity: int
    gpus_running: int                    # GPUs locked to this type
    gpus_idle: int                       # idle GPUs that could take it


@dataclass(frozen=True)
class Placement:
    host: str
    gpu: str                             # where the host's vdsm would create the next instance
    vms: int                             # VMs of this size that still fit on the host


@dataclass(frozen=True)
class Headroom:
    """How many more VMs of one type fit in one cluster, and where the next one would go."""

    cluster: str
    type: str
    name: str | None
    instances_per_vm: int                # from the spec's VMs of this type; 1 without any
    vms: int
    next: tuple[Placement, ...]          # hosts with room, best first (at most a handful)


@dataclass(frozen=True)
class FleetMap:
    clusters: tuple[ClusterView, ...]
    totals: tuple[TypeTotals, ...]       # per cluster and type, then fleet-wide (cluster None)
    headroom: tuple[Headroom, ...]
    flags: tuple[Flag, ...] = ()         # what concerns no host or GPU of the map
    generated_at: str | None = None      # ISO time of the observation

    def hosts(self) -> tuple[HostView, ...]:
        return tuple(h for c in self.clusters for h in c.hosts)

    def gpus(self) -> tuple[tuple[HostView, GpuView], ...]:
        return tuple((h, g) for h in self.hosts() for g in h.gpus)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, GpuView):
            out["occupancy"] = value.occupancy
        return out
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value
