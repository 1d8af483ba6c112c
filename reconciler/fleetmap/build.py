"""Build the fleet map from Observed (and the Plan made from it, for its drift and blockers)."""
from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reconciler.fleetmap.checks import host_checks
from reconciler.fleetmap.headroom import headroom, totals
from reconciler.fleetmap.join import MdevOwners
from reconciler.fleetmap.model import (ClusterView, FleetMap, Flag, GpuView, GpuVm, HostView, Mode,
                                       Offer, SmiFigures)
from reconciler.model.facts import (ActiveMdev, Host, HostDevice, MdevParentType, MdevType,
                                    Observed, PciFunction, ProbeFacts, Vm)
from reconciler.plan.result import Plan
from reconciler.spec.model import DesiredState

GPU_VENDORS = frozenset({"10de", "1002"})          # NVIDIA, AMD/ATI
_RUNNING = frozenset({"up", "powering_up", "wait_for_launch", "migrating", "paused",
                      "reboot_in_progress", "powering_down", "restoring_state", "saving_state"})


def pci_name(address: str) -> str:
    return "pci_" + address.replace(":", "_").replace(".", "_")


def pci_address(name: str) -> str | None:
    parts = name.split("_")
    if len(parts) != 5 or parts[0] != "pci":
        return None
    return f"{parts[1]}:{parts[2]}:{parts[3]}.{parts[4]}"


@dataclass
class _Gpu:
    """One physical GPU while the map is being built: what the engine and the probe say."""

    address: str
    device: HostDevice | None = None
    function: PciFunction | None = None
    vfs: list[HostDevice] = field(default_factory=list)
    vf_functions: list[PciFunction] = field(default_factory=list)


def _is_audio(dev: HostDevice | None, fn: PciFunction | None) -> bool:
    if fn is not None and fn.class_code:
        return not fn.class_code.startswith("0x03")
    return bool(dev and dev.product_name and "audio" in dev.product_name.lower())


def _physical_gpus(host: Host, probe: ProbeFacts | None) -> list[_Gpu]:
    functions = {f.address: f for f in probe.pci_functions} if probe else {}
    gpus: dict[str, _Gpu] = {}
    vf_of: dict[str, list[HostDevice]] = defaultdict(list)
    for dev in host.devices:
        address = pci_address(dev.name)
        if address is None or not (dev.mdev_types or dev.vendor_id in GPU_VENDORS):
            continue
        if dev.physical_function:
            vf_of[dev.physical_function].append(dev)
            continue
        fn = functions.get(address)
        if _is_audio(dev, fn):
            continue
        gpus[address] = _Gpu(address, device=dev, function=fn)
    for fn in functions.values():
        # The probe sees GPUs the engine does not list (a host that is not up reports none).
        if fn.physfn or fn.address in gpus or not (fn.class_code or "").startswith("0x03"):
            continue
        if fn.vendor_id in GPU_VENDORS:
            gpus[fn.address] = _Gpu(fn.address, function=fn)
    for gpu in gpus.values():
        gpu.vfs = sorted(vf_of.get(pci_name(gpu.address), []), key=lambda d: d.name)
        gpu.vf_functions = sorted((f for f in functions.values() if f.physfn == gpu.address),
                                  key=lambda f: f.address)
    return [gpus[a] for a in sorted(gpus)]


_MAX_RE = re.compile(r"max_instance=(\d+)")


def _most(t: MdevType | MdevParentType) -> int | None:
    if isinstance(t, MdevType) and t.max_instances is not None:
        return t.max_instances
    m = _MAX_RE.search(t.description or "")
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class _Seats:
    backend: str | None
    offers: tuple[str, ...]
    type: str | None = None
    type_name: str | None = None
    used: int | None = None
    total: int | None = None
    names: Mapping[str, str] = field(default_factory=dict)
    maximum: Mapping[str, int] = field(default_factory=dict)


def _seats(gpu: _Gpu, probe: ProbeFacts | None, mdevs: tuple[ActiveMdev, ...]) -> _Seats:
    """The GPU's vGPU backend, the types it offers, and the type in use with its seats.

    Probe facts decide when the host was probed (the mdevs that exist); otherwise the engine's
    `available_instances` do: a GPU running a type offers fewer than its maximum of it."""
    dev = gpu.device
    vf_addresses = {f.address for f in gpu.vf_functions}
    engine_types: list[MdevType] = [*(dev.mdev_types if dev else ()),
                                    *(t for vf in gpu.vfs for t in vf.mdev_types)]
    probe_types = [t for t in (probe.mdev_types if probe else ())
                   if t.parent == gpu.address or t.parent in vf_addresses]
    names: dict[str, str] = {}
    maximum: dict[str, int] = {}
    for t in (*engine_types, *probe_types):
        name = t.human_readable_name if isinstance(t, MdevType) else t.human_name
        if name:
            names.setdefault(t.name, name)
        most = _most(t)
        if most is not None:
            maximum[t.name] = max(maximum.get(t.name, 0), most)
    vfio_vfs = [f for f in gpu.vf_functions if f.current_vgpu_type is not None]
    if vfio_vfs:
        used_vfs = [f for f in vfio_vfs if f.current_vgpu_type]
        offered = sorted({t for f in vfio_vfs for t in f.creatable_vgpu_types})
        for f in used_vfs:
            if f.current_vgpu_name:
                names[f"nvidia-{f.current_vgpu_type}"] = f.current_vgpu_name
        if not used_vfs:
            return _Seats("vendor-vfio", tuple(offered), used=0, names=names)
        in_use = f"nvidia-{used_vfs[0].current_vgpu_type}"
        # A free VF lists the type in use while the board has room; VFs past the board's limit
        # list nothing, so the free VFs that list it are the seats left.
        free = sum(1 for f in vfio_vfs
                   if not f.current_vgpu_type and in_use in f.creatable_vgpu_types)
        return _Seats("vendor-vfio", tuple(offered) or (in_use,), in_use, names.get(in_use),
                      len(used_vfs), len(used_vfs) + free, names, maximum)
    offered_types = tuple(sorted({t.name for t in (*engine_types, *probe_types)}))
    if not offered_types:
        return _Seats(None, ())
    on_vf = any(vf.mdev_types for vf in gpu.vfs) or any(t.parent in vf_addresses
                                                       for t in probe_types)
    backend = "mdev-vf" if on_vf else "mdev"
    if probe is not None and probe.ok:
        counts: dict[str, int] = defaultdict(int)
        for m in mdevs:
            counts[m.mdev_type] += 1
        if not counts:
            return _Seats(backend, offered_types, used=0, names=names, maximum=maximum)
        in_use = max(sorted(counts), key=lambda k: counts[k])
        return _Seats(backend, offered_types, in_use, names.get(in_use), sum(counts.values()),
                      maximum.get(in_use), names, maximum)
    if backend == "mdev" and dev is not None:
        # Engine facts only: every type below its maximum is either the one running (still
        # offering some) or locked out (0). All at 0 is a full GPU whose type the engine hides.
        below = [t for t in dev.mdev_types
                 if (most := _most(t)) is not None and t.available_instances < most]
        if not below:
            return _Seats(backend, offered_types, used=0, names=names, maximum=maximum)
        running = [t for t in below if t.available_instances > 0]
        if len(running) == 1 or len(below) == 1:
            t = (running or below)[0]
            most = _most(t) or 0
            return _Seats(backend, offered_types, t.name, names.get(t.name),
                          most - t.available_instances, most, names, maximum)
        return _Seats(backend, offered_types, None, None, None, None, names, maximum)
    return _Seats(backend, offered_types, names=names, maximum=maximum)


def _mode(gpu: _Gpu, seats: _Seats, holders: list[GpuVm], driver: str | None,
          host_up: bool) -> Mode:
    if holders:
        return "passthrough"
    if seats.used or (seats.backend is not None and seats.used is None and seats.maximum
                      and seats.type is None and gpu.device is not None
                      and all(t.available_instances == 0 for t in gpu.device.mdev_types)):
        return "vgpu"           # running vGPUs; a full GPU seen by the engine alone: type unknown
    if seats.backend is not None and seats.used == 0:
        return "idle"
    if driver in ("vfio-pci", "pci-stub") or (driver is None and seats.backend is None
                                              and gpu.device is not None and host_up):
        return "idle"
    if driver in ("nouveau", "nvidia", "amdgpu", "radeon"):
        return "host"
    return "unknown"


def _smi(probe: ProbeFacts | None, address: str) -> SmiFigures | None:
    if probe is None or probe.nvidia_smi is None:
        return None
    g = next((g for g in probe.nvidia_smi.gpus if g.address == address), None)
    if g is None:
        return None
    return SmiFigures(g.memory_used_mib, g.memory_total_mib, g.utilization_percent,
                      g.vgpus_active)


def _hostdev_holders(vms: tuple[Vm, ...]) -> dict[tuple[str, str], list[tuple[Vm, bool]]]:
    holders: dict[tuple[str, str], list[tuple[Vm, bool]]] = defaultdict(list)
    for vm in vms:
        for d in vm.host_devices:
            host = d.host or (vm.pinned_hosts[0] if len(vm.pinned_hosts) == 1 else None)
            if host:
                holders[(host, d.name)].append((vm, d.placeholder))
    return holders


class _Flags:
    """The plan's drift items by key, handed out as they are placed; the rest stay fleet-level."""

    def __init__(self, plan: Plan | None) -> None:
        self.by_key: dict[str, list[Flag]] = defaultdict(list)
        for d in plan.drift if plan else ():
            self.by_key[d.key].append(Flag(d.status, d.message, d.key))
        self.placed: set[str] = set()

    def take(self, key: str) -> tuple[Flag, ...]:
        self.placed.add(key)
        return tuple(self.by_key.get(key, ()))

    def rest(self) -> tuple[Flag, ...]:
        return tuple(f for k, fs in sorted(self.by_key.items()) if k not in self.placed for f in fs)


def build_fleet_map(observed: Observed, plan: Plan | None = None,
                    desired: DesiredState | None = None,
                    generated_at: str | None = None) -> FleetMap:
    """The map of every GPU host the observation covers; `plan` adds its drift and blockers,
    `desired` the instances per VM of each vGPU type (for the headroom)."""
    flags = _Flags(plan)
    holders = _hostdev_holders(observed.vms)
    vms_on_host: dict[str, list[Vm]] = defaultdict(list)
    for vm in observed.vms:
        if vm.host and vm.status in _RUNNING:
            vms_on_host[vm.host].append(vm)
    smi_vgpus = [v for p in observed.probes if p.ok and p.nvidia_smi for v in p.nvidia_smi.vgpus]
    owners = MdevOwners(observed.vms, smi_vgpus)
    hosts_by_cluster: dict[str, list[HostView]] = defaultdict(list)
    # VM keys are flagged on the GPU the VM sits on; remember where each VM landed.
    vm_gpus: dict[str, list[tuple[str, str]]] = defaultdict(list)
    host_views: dict[str, HostView] = {}
    for host in sorted(observed.hosts, key=lambda h: (h.cluster, h.name)):
        probe = observed.probe(host.name)
        ok_probe = probe if probe is not None and probe.ok else None
        by_gpu = ok_probe.mdevs_by_gpu() if ok_probe else {}
        placed: set[str] = set()
        gpus: list[GpuView] = []
        gpu_flags: dict[str, list[Flag]] = defaultdict(list)
        for gpu in _physical_gpus(host, ok_probe):
            mdevs = by_gpu.get(gpu.address, ())
            seats = _seats(gpu, ok_probe, mdevs)
            dev, fn = gpu.device, gpu.function
            names = [pci_name(gpu.address)] + [d.name for d in gpu.vfs] \
                + [pci_name(f.address) for f in gpu.vf_functions]
            held: list[GpuVm] = []
            seen: set[str] = set()
            for name in dict.fromkeys(names):
                for vm, placeholder in holders.get((host.name, name), ()):
                    if vm.name in seen or placeholder:
                        continue
                    seen.add(vm.name)
                    held.append(GpuVm(vm.name, vm.status, "hostdev" if name == names[0]
                                      else "vf-hostdev",
                                      parent=None if name == names[0] else pci_address(name)))
            if dev is not None and dev.vm and dev.vm not in seen:
                vm = owners.vm_named(dev.vm)
                held.append(GpuVm(dev.vm, vm.status if vm else None, "engine"))
                seen.add(dev.vm)
            vgpu_vms: list[GpuVm] = []
            vf_held = [h for h in held if h.via == "vf-hostdev"]
            if seats.backend == "vendor-vfio":
                # VFs handed to VMs carry their vGPUs; nvidia-smi names the others' VMs.
                vgpu_vms, held = vf_held, [h for h in held if h.via != "vf-hostdev"]
                if not vgpu_vms and ok_probe and ok_probe.nvidia_smi:
                    for v in ok_probe.nvidia_smi.vgpus:
                        if v.gpu == gpu.address and v.vm_name:
                            vm = owners.vm_named(v.vm_name)
                            vgpu_vms.append(GpuVm(v.vm_name, vm.status if vm else None,
                                                  "nvidia-smi"))
            for m in mdevs:
                owner = owners.owner(m.uuid)
                parent = None if m.parent == gpu.address else m.parent
                if owner is None:
                    vgpu_vms.append(GpuVm("?" + m.uuid, None, "mdev", m.uuid, parent))
                    gpu_flags[gpu.address].append(Flag(
                        "check", f"mdev {m.uuid} ({m.mdev_type}) belongs to no VM the engine "
                                 "knows: created outside oVirt, or left behind"))
                    continue
                vgpu_vms.append(GpuVm(owner.name, owner.vm.status if owner.vm else None,
                                      owner.via, m.uuid, parent))  # type: ignore[arg-type]
                placed.add(owner.name)
                if owner.vm is not None and owner.vm.host not in (None, host.name):
                    gpu_flags[gpu.address].append(Flag(
                        "check", f"mdev {m.uuid} of VM {owner.name} is on {host.name}, but the "
                                 f"engine says the VM runs on {owner.vm.host}"))
            driver = (dev.driver if dev else None) or (fn.driver if fn else None)
            mode = _mode(gpu, seats, held, driver, host.status == "up")
            smi = _smi(ok_probe, gpu.address)
            if seats.backend == "mdev" and smi and smi.vgpus_active is not None \
                    and ok_probe is not None and smi.vgpus_active != len(mdevs):
                gpu_flags[gpu.address].append(Flag(
                    "check", f"nvidia-smi reports {smi.vgpus_active} active vGPU(s), sysfs "
                             f"{len(mdevs)} mdev(s)"))
            vms = tuple(held) if mode == "passthrough" else tuple(vgpu_vms)
            for v in vms:
                vm_gpus[v.name].append((host.name, gpu.address))
            gpus.append(GpuView(
                address=gpu.address, device=pci_name(gpu.address),
                model=(dev.product_name if dev and dev.product_name else None)
                or _smi_name(ok_probe, gpu.address) or (fn.device_id if fn else None) or "?",
                pci_id=dev.pci_id if dev else (f"{fn.vendor_id}:{fn.device_id}" if fn
                                               and fn.vendor_id and fn.device_id else None),
                driver=driver,
                iommu_group=dev.iommu_group if dev and dev.iommu_group is not None
                else (fn.iommu_group if fn else None),
                mode=mode,
                vgpu_type=seats.type if mode == "vgpu" else None,
                vgpu_type_name=seats.type_name if mode == "vgpu" else None,
                seats_used=seats.used if seats.backend else None,
                seats_total=seats.total if mode == "vgpu" else None,
                vms=vms, smi=smi, backend=seats.backend,
                offers=tuple(Offer(t, seats.names.get(t), seats.maximum.get(t))
                             for t in seats.offers)))
        unplaced = tuple(sorted(v.name for v in vms_on_host.get(host.name, ())
                                if v.mediated_devices and v.name not in placed))
        host_flags = list(flags.take(f"host:{host.name}"))
        host_flags += host_checks(host, probe, observed, gpus)
        if ok_probe is not None:
            for name in unplaced:
                host_flags.append(Flag("check", f"VM {name} runs here with vGPUs, but no mdev of "
                                                "it exists on the host"))
        view = HostView(
            name=host.name, cluster=host.cluster, status=host.status,
            cpu_vendor=host.cpu_vendor, probe_cpu_vendor=ok_probe.cpu_vendor if ok_probe else None,
            vgpu_placement=host.vgpu_placement, passthrough_enabled=host.device_passthrough,
            probed=ok_probe is not None, probe_note=_probe_note(probe, gpus),
            driver_version=ok_probe.nvidia_smi.driver_version
            if ok_probe and ok_probe.nvidia_smi else None,
            gpus=tuple(replace(g, flags=tuple(gpu_flags.get(g.address, ()))) for g in gpus),
            flags=tuple(host_flags), vgpu_vms_unplaced=unplaced if ok_probe is None else ())
        host_views[host.name] = view
        hosts_by_cluster[host.cluster].append(view)
    _place_vm_flags(flags, host_views, vm_gpus, observed, desired)
    clusters = tuple(ClusterView(c.name, c.cpu_type, tuple(hosts_by_cluster.get(c.name, ())))
                     for c in sorted(observed.clusters, key=lambda c: c.name)
                     if hosts_by_cluster.get(c.name))
    known = {c.name for c in clusters}
    clusters += tuple(ClusterView(name, None, tuple(hs)) for name, hs in sorted(hosts_by_cluster.items())
                      if name not in known)
    clusters = tuple(replace(c, hosts=tuple(host_views[h.name] for h in c.hosts)) for c in clusters)
    return FleetMap(clusters=clusters, totals=totals(clusters),
                    headroom=headroom(clusters, _instances(desired)), flags=flags.rest(),
                    generated_at=generated_at)


def _smi_name(probe: ProbeFacts | None, address: str) -> str | None:
    if probe is None or probe.nvidia_smi is None:
        return None
    return next((g.name for g in probe.nvidia_smi.gpus if g.address == address), None)


def _probe_note(probe: ProbeFacts | None, gpus: list[GpuView]) -> str | None:
    if probe is None:
        return "not probed"
    if not probe.ok:
        return f"probe failed: {probe.reason}"
    if probe.nvidia_smi_note and any(g.backend for g in gpus):
        return probe.nvidia_smi_note      # a vGPU host without nvidia-smi figures
    return None


def _place_vm_flags(flags: _Flags, hosts: dict[str, HostView],
                    vm_gpus: Mapping[str, list[tuple[str, str]]], observed: Observed,
                    desired: DesiredState | None) -> None:
    """Put each `vm:NAME` drift item on the GPUs the VM sits on, else on the host the spec or
    the engine ties it to; what has no place stays fleet-level."""
    spec_host = {v.name: v.passthrough.host for v in desired.vms if v.passthrough} \
        if desired else {}
    for key in list(flags.by_key):
        if not key.startswith("vm:"):
            continue
        name = key[3:]
        items = flags.by_key[key]
        where = vm_gpus.get(name)
        if where:
            for host_name, address in where:
                h = hosts[host_name]
                gpus = tuple(replace(g, flags=g.flags + tuple(items)) if g.address == address
                             else g for g in h.gpus)
                hosts[host_name] = replace(h, gpus=gpus)
            flags.placed.add(key)
            continue
        vm = observed.vm(name)
        target = spec_host.get(name) or (vm.host if vm else None) \
            or (vm.pinned_hosts[0] if vm and len(vm.pinned_hosts) == 1 else None)
        if target in hosts:
            h = hosts[target]
            hosts[target] = replace(h, flags=h.flags + tuple(items))
            flags.placed.add(key)


def _instances(desired: DesiredState | None) -> dict[str, int]:
    """The usual instance count per VM of each vGPU type in the spec (the most frequent one)."""
    counts: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for v in desired.vms if desired else ():
        if v.vgpu:
            counts[v.vgpu.type][v.vgpu.instances] += 1
    return {t: max(sorted(c), key=lambda n: c[n]) for t, c in counts.items()}
