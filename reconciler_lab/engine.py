"""The lab engine's model: clusters, hosts, VMs and events, the engine's rules, and persistence.

Every rule mirrors the oVirt engine (see docs/lab.md for the list and the engine's messages). Status
changes that take time on a real engine are staged: an action moves the entity into its first
transitional status and a clock thread (`LabClock`) advances it after simulated seconds scaled by
`time_scale`. All state is guarded by one re-entrant lock; readers take it too.
"""
from __future__ import annotations

import heapq
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from reconciler_lab import legacy
from reconciler_lab.cpu import iommu_enabled, missing_vendor_flag
from reconciler_lab.errors import EngineFault as EngineFault  # re-exported for callers
from reconciler_lab.errors import not_found as not_found
from reconciler_lab.faults import FaultConfig
from reconciler_lab.quotas import Quotas
from reconciler_lab.records import LabDevice, LabFleet, LabHost
from reconciler_lab.placement import allocate_vgpus
from reconciler_lab.roots import HostRoots, boot_devices

STATE_FILE = "engine.json"
T = TypeVar("T")
STATE_FORMAT = 1

# Simulated durations (engine seconds) before scaling by time_scale.
DURATIONS = {
    "deactivate": 5.0, "install": 20.0, "reboot": 40.0, "activate": 5.0,
    "vm_launch": 3.0, "vm_power_up": 5.0, "vm_shutdown": 8.0,
}

_HOST_INSTALLABLE = ("maintenance", "non_operational", "install_failed", "installing_os")
# MaintenanceNumberOfVdssCommand: the statuses a host may be moved to maintenance from.
_HOST_DEACTIVATABLE = ("maintenance", "non_responsive", "up", "error",
                       "preparing_for_maintenance", "down", "non_operational", "install_failed")
_VM_RUNNING = ("wait_for_launch", "powering_up", "up", "powering_down", "migrating")


def hex_id(name: str) -> str:
    """Host device ids are the hex encoding of the device name, as the engine's HexUtils does."""
    return name.encode("utf-8").hex()


def name_from_hex(value: str) -> str | None:
    try:
        return bytes.fromhex(value).decode("utf-8")
    except ValueError:
        return None


@dataclass
class Cluster:
    id: str
    name: str
    cpu_type: str | None
    architecture: str
    version: str


@dataclass
class Host:
    id: str
    name: str
    cluster_id: str
    status: str
    cpu_type: str | None
    cpu_name: str
    base_cmdline: str
    custom_kernel_cmdline: str
    stored_args: str                       # what the last install applied (lastStoredKernelCmdline)
    booted_args: str                       # custom args the running kernel booted with
    reported_cmdline: str | None = None    # /proc/cmdline read from the host root, when simulated
    reinstallation_required: bool = False
    vgpu_placement: str = "consolidated"
    behaviour: str = "normal"
    status_detail: str | None = None
    # Staged operation: name, stage, arguments and remaining simulated seconds (persisted).
    op: str | None = None
    op_stage: int = 0
    op_args: dict[str, Any] = field(default_factory=dict)
    op_remaining: float = 0.0
    maintenance_failed_reported: bool = False
    comment: str = ""
    rev: int = 0
    dev_rev: int = 0


@dataclass
class Vm:
    id: str
    name: str
    cluster_id: str
    status: str = "down"
    host_id: str | None = None
    pinned_host_ids: list[str] = field(default_factory=list)
    affinity: str = "migratable"
    display_type: str = "vnc"
    consoles: list[str] = field(default_factory=list)            # protocols, in order
    hostdev_host_id: str | None = None                           # host the devices are resolved on
    host_devices: dict[str, bool] = field(default_factory=dict)  # device name -> placeholder
    mdevs: dict[str, dict[str, str]] = field(default_factory=dict)   # mdev uuid -> spec params
    running_mdevs: list[list[str]] = field(default_factory=list)     # [type, gpu name, uuid]
    running_hostdevs: list[str] = field(default_factory=list)        # devices held on host_id
    description: str = ""
    comment: str = ""
    custom_properties: dict[str, str] = field(default_factory=dict)  # name -> value, as stored
    op: str | None = None
    op_stage: int = 0
    op_remaining: float = 0.0
    rev: int = 0


@dataclass
class Event:
    index: int
    code: int
    severity: str
    time: float
    description: str
    host_id: str | None = None
    vm_id: str | None = None
    cluster_id: str | None = None
    correlation_id: str | None = None


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "lab:" + "/".join(parts)))


def _status_word(status: str) -> str:
    """`wait_for_launch` -> `Wait For Launch`, as the engine prints statuses in messages."""
    return " ".join(w.capitalize() for w in status.split("_"))


def _split_args(value: str) -> list[str]:
    return [a for a in value.split() if a]


class LabEngine:
    """The whole engine state, its rules, its clock and its persistence."""

    def __init__(self, fleet: LabFleet, state_dir: Path, *, time_scale: float = 0.01,
                 faults: FaultConfig | None = None) -> None:
        self.fleet = fleet
        self.state_dir = state_dir
        self.time_scale = max(time_scale, 0.0)
        self.faults = faults or FaultConfig()
        self.user = fleet.username
        self.lock = threading.RLock()
        self.roots = HostRoots(state_dir / "hosts")
        self.clusters: dict[str, Cluster] = {}
        self.hosts: dict[str, Host] = {}
        self.vms: dict[str, Vm] = {}
        self.events: list[Event] = []
        self._fleet_hosts: dict[str, LabHost] = {h.name: h for h in fleet.hosts}
        self._devices: dict[str, dict[str, LabDevice]] = {}        # host id -> name -> device
        self._groups: dict[str, dict[int, list[str]]] = {}         # host id -> group -> names
        self._by_hex: dict[str, dict[str, str]] = {}               # host id -> hex id -> name
        self._attached: dict[tuple[str, str], str] = {}            # (host id, device) -> vm id
        self._in_use: dict[tuple[str, str], str] = {}              # (host id, device) -> running vm
        self._mdev_usage: dict[str, dict[str, list[Any]]] = {}     # host id -> gpu -> [type, n]
        self._rev = 0
        self._dirty = False
        self._last_save = 0.0
        self._due: list[tuple[float, int, str, str]] = []          # (monotonic, seq, kind, id)
        self._seq = 0
        self._current: dict[tuple[str, str], int] = {}            # latest queued step per entity
        self._wake = threading.Condition(self.lock)
        self._stop = False
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[], None]] = []
        # The engine's `InstanceId` (product_info.instance_id): made once per installation, kept
        # with its database. Two labs of one fleet share host and VM ids, never this.
        self.instance_id = str(uuid.uuid4())
        self.quotas = Quotas()                  # of the one data center
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.lock:
            if (self.state_dir / STATE_FILE).exists():
                self._load()
            else:
                self._seed()
                self._dirty = True
            self._index_all()

    # ------------------------------------------------------------------ seeding and persistence

    def _seed(self) -> None:
        f = self.fleet
        for c in f.clusters:
            cid = _uuid(f.name, "cluster", c.name)
            self.clusters[cid] = Cluster(cid, c.name, c.cpu_type, c.architecture, c.version)
        cluster_ids = {c.name: c.id for c in self.clusters.values()}
        for h in f.hosts:
            if h.cluster not in cluster_ids:
                cid = _uuid(f.name, "cluster", h.cluster)
                self.clusters[cid] = Cluster(cid, h.cluster, None, "x86_64", "4.7")
                cluster_ids[h.cluster] = cid
            hid = _uuid(f.name, "host", h.name)
            self.hosts[hid] = Host(
                id=hid, name=h.name, cluster_id=cluster_ids[h.cluster], status=h.status,
                cpu_type=h.cpu_type, cpu_name=h.cpu_name, base_cmdline=h.base_cmdline,
                custom_kernel_cmdline=h.custom_kernel_cmdline, stored_args=h.booted_custom_args,
                booted_args=h.booted_custom_args,
                reinstallation_required=getattr(
                    h, "reinstallation_required",
                    h.custom_kernel_cmdline.split() != h.booted_custom_args.split()),
                vgpu_placement=h.vgpu_placement, behaviour=h.behaviour)
        host_ids = {h.name: h.id for h in self.hosts.values()}
        for v in f.vms:
            vid = _uuid(f.name, "vm", v.name)
            if v.cluster not in cluster_ids:
                cid = _uuid(f.name, "cluster", v.cluster)
                self.clusters[cid] = Cluster(cid, v.cluster, None, "x86_64", "4.7")
                cluster_ids[v.cluster] = cid
            vm = Vm(id=vid, name=v.name, cluster_id=cluster_ids[v.cluster],
                    pinned_host_ids=[host_ids[n] for n in v.pinned_hosts if n in host_ids],
                    affinity=v.affinity, consoles=list(v.graphics),
                    display_type=v.graphics[0] if v.graphics else "vnc")
            for i, m in enumerate(v.mediated_devices):
                params = {"mdevType": m.mdev_type, "nodisplay": "true" if m.nodisplay else "false"}
                if m.driver_params:
                    params["driverParams"] = m.driver_params
                vm.mdevs[_uuid(f.name, "mdev", v.name, str(i))] = params
            vm.custom_properties = dict(v.custom_properties)
            legacy_value = vm.custom_properties.get(legacy.PROPERTY)
            if legacy_value is not None and legacy.converts(f.engine_version):
                # What the 4.5 database upgrade does to a VM still carrying the property.
                del vm.custom_properties[legacy.PROPERTY]
                for j, params in enumerate(legacy.to_mdevs(legacy_value)):
                    vm.mdevs[_uuid(f.name, "mdev", v.name, "legacy", str(j))] = params
            if v.host_devices and len(vm.pinned_host_ids) == 1:
                vm.hostdev_host_id = vm.pinned_host_ids[0]
                self.vms[vid] = vm
                self._ensure_host_index(vm.hostdev_host_id)
                for name in v.host_devices:
                    if name in self._devices[vm.hostdev_host_id]:
                        self._attach_group(vm, vm.hostdev_host_id, name)
            self.vms[vid] = vm
            if v.status == "up" and v.host in host_ids:
                vm.status = "up"
                vm.host_id = host_ids[v.host]
        self._event(1, "normal", "Starting oVirt Engine.")

    def _ensure_host_index(self, host_id: str) -> None:
        if host_id in self._devices:
            return
        devices = {d.name: d for d in self._boot_devices(self.hosts[host_id])}
        self._devices[host_id] = devices
        groups: dict[int, list[str]] = {}
        for d in devices.values():
            if d.iommu_group is not None:
                groups.setdefault(d.iommu_group, []).append(d.name)
        self._groups[host_id] = groups
        self._by_hex[host_id] = {hex_id(n): n for n in devices}

    def _boot_devices(self, host: Host) -> tuple[LabDevice, ...]:
        """The devices the engine lists for the host's current boot: from its root tree when it
        has one, else from the fleet (re-expanded when it booted other args than the fleet's)."""
        lab = self._fleet_hosts.get(host.name)
        listed = self.roots.devices(self.lab_host(host)) if lab is not None else None
        if listed is not None:
            return listed
        if lab is None:
            return ()
        if host.booted_args.split() != lab.booted_custom_args.split():
            expanded = boot_devices(self.lab_host(host)) if getattr(lab, "gpus", ()) else None
            if expanded is not None:
                return expanded
        return lab.devices

    def _refresh_devices(self, host_id: str) -> None:
        for index in (self._devices, self._groups, self._by_hex):
            index.pop(host_id, None)
        self._ensure_host_index(host_id)
        self._touch_devices(host_id)

    def _index_all(self) -> None:
        for hid in self.hosts:
            self._ensure_host_index(hid)
            self._mdev_usage[hid] = {}
        for vm in self.vms.values():
            if vm.hostdev_host_id:
                for name in vm.host_devices:
                    self._attached[(vm.hostdev_host_id, name)] = vm.id
        for vm in self.vms.values():
            if vm.status in _VM_RUNNING and vm.host_id:
                if not vm.running_mdevs and vm.mdevs and vm.op is None:
                    # A fleet seeds running vGPU VMs: place their instances as a start would.
                    alloc = self._allocate(vm, self.hosts[vm.host_id])
                    # vdsm names each mdev with its VM device id (docs/fleet-map.md, the join)
                    vm.running_mdevs = [[t, g, mid] for mid, (t, g) in zip(vm.mdevs, alloc or [])]
                    if not vm.running_hostdevs and vm.hostdev_host_id == vm.host_id:
                        vm.running_hostdevs = [n for n, ph in vm.host_devices.items() if not ph]
                for mtype, gpu, *_ in vm.running_mdevs:
                    usage = self._mdev_usage[vm.host_id].setdefault(gpu, [mtype, 0])
                    usage[1] += 1
                if not vm.running_hostdevs and vm.hostdev_host_id == vm.host_id and vm.op is None:
                    vm.running_hostdevs = [n for n, ph in vm.host_devices.items() if not ph]
                for name in vm.running_hostdevs:
                    self._in_use[(vm.host_id, name)] = vm.id
        now = time.monotonic()
        for h in self.hosts.values():
            if h.op:
                self._schedule("host", h.id, now + h.op_remaining * self.time_scale)
        for vm in self.vms.values():
            if vm.op:
                self._schedule("vm", vm.id, now + vm.op_remaining * self.time_scale)

    def _load(self) -> None:
        data = json.loads((self.state_dir / STATE_FILE).read_text())
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"unsupported lab state format {data.get('format')!r}")
        self.clusters = {c["id"]: Cluster(**c) for c in data["clusters"]}
        self.hosts = {h["id"]: Host(**h) for h in data["hosts"]}
        self.vms = {v["id"]: Vm(**v) for v in data["vms"]}
        self.events = [Event(**e) for e in data["events"]]
        self.quotas = Quotas(data.get("quotas"))
        if data.get("instance_id"):
            self.instance_id = data["instance_id"]
        else:
            self._dirty = True          # a state from before: keep the id made now

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "format": STATE_FORMAT, "fleet": self.fleet.name,
                "instance_id": self.instance_id, "quotas": self.quotas.to_list(),
                "clusters": [asdict(c) for c in self.clusters.values()],
                "hosts": [asdict(h) for h in self.hosts.values()],
                "vms": [asdict(v) for v in self.vms.values()],
                "events": [asdict(e) for e in self.events],
            }

    def save(self) -> None:
        """Write the state atomically (temp file + rename) so a crash never leaves half a file."""
        with self.lock:
            if not self._dirty:
                return
            # Encoding straight from the dataclasses' __dict__ keeps the lock short (a 10,000-VM
            # fleet: ~0.1 s instead of ~0.3 s through asdict).
            text = json.dumps({
                "format": STATE_FORMAT, "fleet": self.fleet.name,
                "instance_id": self.instance_id, "quotas": self.quotas.to_list(),
                "clusters": list(self.clusters.values()), "hosts": list(self.hosts.values()),
                "vms": list(self.vms.values()), "events": self.events,
            }, default=vars, separators=(",", ":"))
            self._dirty = False
        path = self.state_dir / STATE_FILE
        tmp = path.with_suffix(f".tmp{threading.get_ident()}")
        tmp.write_text(text)
        os.replace(tmp, path)
        self._last_save = time.monotonic()

    def _touch(self, *entities: Host | Vm) -> None:
        self._rev += 1
        for e in entities:
            e.rev = self._rev
        self._dirty = True
        self._wake.notify_all()

    def _touch_devices(self, host_id: str | None) -> None:
        if host_id and host_id in self.hosts:
            self._rev += 1
            self.hosts[host_id].dev_rev = self._rev

    # ------------------------------------------------------------------ clock

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_clock, name="lab-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self.lock:
            self._stop = True
            self._wake.notify_all()
        if self._thread:
            self._thread.join(timeout=5)
        # Record how long each staged operation still has to run, for a restarted lab.
        with self.lock:
            now = time.monotonic()
            remaining = {(k, i): due for due, seq, k, i in self._due
                         if self._current.get((k, i)) == seq}
            scale = self.time_scale or 1.0
            for h in self.hosts.values():
                if h.op and ("host", h.id) in remaining:
                    h.op_remaining = max(0.0, (remaining[("host", h.id)] - now) / scale)
                    self._dirty = True
            for vm in self.vms.values():
                if vm.op and ("vm", vm.id) in remaining:
                    vm.op_remaining = max(0.0, (remaining[("vm", vm.id)] - now) / scale)
                    self._dirty = True
        self.save()

    def _schedule(self, kind: str, ident: str, due: float) -> None:
        """Queue the next step of an entity's operation; an older queued step becomes stale."""
        self._seq += 1
        self._current[(kind, ident)] = self._seq
        heapq.heappush(self._due, (due, self._seq, kind, ident))
        self._wake.notify_all()

    def _after(self, kind: str, ident: str, seconds: float) -> None:
        self._schedule(kind, ident, time.monotonic() + seconds * self.time_scale)

    def advance(self) -> None:
        """Run every staged step that is due; also called by readers so state is never stale."""
        with self.lock:
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, seq, kind, ident = heapq.heappop(self._due)
                if self._current.get((kind, ident)) != seq:
                    continue   # superseded, e.g. activate during preparing_for_maintenance
                del self._current[(kind, ident)]
                try:
                    if kind == "host" and ident in self.hosts:
                        self._step_host(self.hosts[ident])
                    elif kind == "vm" and ident in self.vms:
                        self._step_vm(self.vms[ident])
                except Exception as exc:  # noqa: BLE001 - a broken step must not stop the clock
                    entity = self.hosts.get(ident) or self.vms.get(ident)
                    if entity is not None:
                        entity.op = None
                    self._event(0, "error", f"Lab engine could not advance {kind} {ident}: "
                                            f"{type(exc).__name__}: {exc}")

    def queued_steps(self) -> int:
        """Staged steps not yet due, superseded ones included: 0 once the engine is idle."""
        with self.lock:
            return len(self._due)

    def _run_clock(self) -> None:
        while True:
            with self.lock:
                if self._stop:
                    return
                self.advance()
                timeout = 0.1
                if self._due:
                    timeout = min(timeout, max(0.0, self._due[0][0] - time.monotonic()))
                self._wake.wait(timeout)
                flush = self._dirty and time.monotonic() - self._last_save > 0.2
            if flush:
                self.save()

    # ------------------------------------------------------------------ events

    def _event(self, code: int, severity: str, description: str, *, host: Host | None = None,
               vm: Vm | None = None, cid: str | None = None) -> None:
        index = self.events[-1].index + 1 if self.events else 1
        cluster_id = host.cluster_id if host else (vm.cluster_id if vm else None)
        self.events.append(Event(index, code, severity, time.time(), description,
                                 host.id if host else None, vm.id if vm else None,
                                 cluster_id, cid))
        self._dirty = True

    def quota_change(self, change: Callable[[Quotas], T]) -> T:
        """Change the data center's quotas under the engine's lock, and keep the change."""
        with self.lock:
            result = change(self.quotas)
            self._dirty = True
            return result

    def add_event(self, code: int, severity: str, description: str) -> None:
        with self.lock:
            self._event(code, severity, description)

    # ------------------------------------------------------------------ lookups

    def host(self, host_id: str) -> Host:
        h = self.hosts.get(host_id)
        if h is None:
            raise not_found("host")
        return h

    def vm(self, vm_id: str) -> Vm:
        v = self.vms.get(vm_id)
        if v is None:
            raise not_found("vm")
        return v

    def cluster(self, cluster_id: str) -> Cluster:
        c = self.clusters.get(cluster_id)
        if c is None:
            raise not_found("cluster")
        return c

    def host_by_name(self, name: str) -> Host:
        for h in self.hosts.values():
            if h.name == name:
                return h
        raise not_found("host")

    def vm_by_name(self, name: str) -> Vm:
        for v in self.vms.values():
            if v.name == name:
                return v
        raise not_found("vm")

    def lab_host(self, host: Host) -> LabHost:
        """The fleet's host, carrying the engine's current kernel arguments."""
        base = self._fleet_hosts.get(host.name) or LabHost(
            name=host.name, cluster=self.clusters[host.cluster_id].name, cpu_type=host.cpu_type,
            cpu_name=host.cpu_name)
        return replace(base, custom_kernel_cmdline=host.custom_kernel_cmdline,
                       booted_custom_args=host.booted_args)

    def host_root(self, name: str) -> Path:
        """The host's root tree, materialised on first use; from then on the engine reports what
        the tree says (as the engine reports what VDSM reads on the host)."""
        with self.lock:
            h = self.host_by_name(name)
            fresh = not self.roots.exists(name)
            root = self.roots.root(self.lab_host(h))
            if fresh:
                reported = self.roots.proc_cmdline(name)
                if reported is not None:
                    h.reported_cmdline = reported
                for vm in (v for v in self.vms.values() if v.host_id == h.id):
                    for mtype, gpu, mdev_uuid in (e[:3] for e in vm.running_mdevs if len(e) > 2):
                        try:   # VMs running before the tree existed: their mdevs go in as well
                            self.roots.create_mdev(self.lab_host(h), gpu, mtype, mdev_uuid, vm.name)
                        except ValueError:
                            pass
                self._touch(h)
                self._refresh_devices(h.id)
            return root

    def devices(self, host_id: str) -> dict[str, LabDevice]:
        self._ensure_host_index(host_id)
        return self._devices[host_id]

    def device_by_hex(self, host_id: str, dev_id: str) -> LabDevice:
        self._ensure_host_index(host_id)
        name = self._by_hex[host_id].get(dev_id)
        if name is None:
            raise not_found("host device")
        return self._devices[host_id][name]

    def device_user(self, host_id: str, name: str) -> str | None:
        return self._in_use.get((host_id, name))

    def available_instances(self, host_id: str, device: LabDevice, mdev_type: str) -> int:
        """One vGPU type per physical GPU: once it runs a type, its other types show 0."""
        usage = self._mdev_usage.get(host_id, {}).get(device.name)
        for t in device.mdev_types:
            if t.name == mdev_type:
                if usage is None or usage[1] == 0:
                    return t.max_instances
                if usage[0] != mdev_type:
                    return 0
                return max(0, t.max_instances - usage[1])
        return 0

    def reported_cmdline(self, host: Host) -> str:
        if host.reported_cmdline is not None:
            return host.reported_cmdline
        return " ".join(_split_args(host.base_cmdline) + _split_args(host.booted_args))

    def passthrough_enabled(self, host: Host) -> bool:
        cluster = self.clusters[host.cluster_id]
        words = f"{cluster.cpu_type or ''} {host.cpu_type or ''}"
        if not cluster.cpu_type and not host.cpu_type:
            words = host.cpu_name
        return iommu_enabled(self.reported_cmdline(host), words, cluster.architecture)

    # ------------------------------------------------------------------ hosts

    def update_host(self, host_id: str, *, custom_kernel_cmdline: str | None = None,
                    vgpu_placement: str | None = None, cid: str | None = None) -> Host:
        with self.lock:
            h = self.host(host_id)
            if vgpu_placement is not None:
                if vgpu_placement not in ("consolidated", "separated"):
                    raise EngineFault(400, f"Invalid value '{vgpu_placement}' for vgpu_placement.")
                h.vgpu_placement = vgpu_placement
            if custom_kernel_cmdline is not None:
                new = " ".join(custom_kernel_cmdline.split())
                if new != h.custom_kernel_cmdline:
                    h.custom_kernel_cmdline = new
                    h.reinstallation_required = True
            self._touch(h)
            self._event(43, "normal", f"Host {h.name} configuration was updated by {self.user}.",
                        host=h, cid=cid)
            return h

    def deactivate_host(self, host_id: str, reason: str | None = None,
                        cid: str | None = None) -> None:
        """MaintenanceNumberOfVdssCommand: VMs pinned to the host refuse the request up front;
        other VMs are migrated, and a migration that cannot happen leaves the host in
        preparing_for_maintenance (USER_VDS_MAINTENANCE_MIGRATION_FAILED) until they are gone."""
        with self.lock:
            h = self.host(host_id)
            if h.status not in _HOST_DEACTIVATABLE:
                raise EngineFault(409, "[Cannot switch Host to Maintenance mode, Host is not "
                                       "operational.]")
            running = [v for v in self.vms.values()
                       if v.host_id == h.id and v.status in _VM_RUNNING]
            pinned = [v.name for v in running if v.affinity == "pinned"]
            if pinned:
                raise EngineFault(409, "[Cannot switch the following Hosts to Maintenance mode: "
                                       f"{h.name}.\nOne or more running VMs are indicated as "
                                       "non-migratable. The non-migratable VMs are: "
                                       f"{', '.join(pinned)}.]")
            if h.status == "maintenance":
                raise EngineFault(409, "[Cannot switch Host to Maintenance mode. "
                                       "Host is already in Maintenance mode.]")
            others_up = any(o.status == "up" and o.cluster_id == h.cluster_id and o.id != h.id
                            for o in self.hosts.values())
            if running and not others_up:
                cluster = self.clusters[h.cluster_id].name
                raise EngineFault(409, "[The following Hosts have running VMs and cannot be "
                                       f"switched to maintenance mode: {h.name}.\nPlease ensure "
                                       "that the following Clusters have at least one Host in "
                                       f"UP state: {cluster}.]")
            h.status = "preparing_for_maintenance"
            h.status_detail = reason
            h.op, h.op_stage, h.op_args = "deactivate", 0, {}
            h.maintenance_failed_reported = False
            self._touch(h)
            if reason:
                self._event(600, "normal", f"Host {h.name} was switched to Maintenance mode by "
                                           f"{self.user} (Reason: {reason}).", host=h, cid=cid)
            else:
                self._event(620, "normal", f"Host {h.name} was switched to Maintenance mode by "
                                           f"{self.user}.", host=h, cid=cid)
            self._after("host", h.id, DURATIONS["deactivate"])

    def activate_host(self, host_id: str, cid: str | None = None) -> None:
        with self.lock:
            h = self.host(host_id)
            if h.status == "up":
                raise EngineFault(409, "[Cannot activate Host. Host in Up status.]")
            if h.status == "non_responsive":
                raise EngineFault(409, "[Cannot activate Host. Host is in non responsive state.]")
            h.status = "initializing"
            h.op, h.op_stage, h.op_args = "activate", 0, {}
            self._touch(h)
            self._event(16, "normal", f"Activation of host {h.name} initiated by {self.user}.",
                        host=h, cid=cid)
            self._after("host", h.id, DURATIONS["activate"])

    def install_host(self, host_id: str, *, reboot: bool = True, activate: bool = False,
                     cid: str | None = None) -> None:
        with self.lock:
            h = self.host(host_id)
            if h.status not in _HOST_INSTALLABLE:
                raise EngineFault(409, "[Cannot install Host. Please move Host to Maintenance "
                                       "mode first.]")
            h.status = "installing"
            h.op, h.op_stage = "install", 0
            h.op_args = {"reboot": reboot, "activate": activate}
            self._touch(h)
            self._event(509, "normal", f"Installing Host {h.name}. Stage: Host deploy.",
                        host=h, cid=cid)
            self._after("host", h.id, DURATIONS["install"])

    def _fails_install(self, h: Host) -> bool:
        return h.behaviour == "install-fails" or h.name in self.faults.install_fails

    def _never_returns(self, h: Host) -> bool:
        return h.behaviour == "never-returns" or h.name in self.faults.never_returns

    def _step_host(self, h: Host) -> None:
        op = h.op
        if op == "deactivate":
            self._step_deactivate(h)
        elif op == "activate":
            cluster = self.clusters[h.cluster_id]
            missing = missing_vendor_flag(cluster.cpu_type, cluster.architecture,
                                          h.cpu_type or h.cpu_name)
            if missing:
                # VirtMonitoringStrategy: a host whose CPU cannot run the cluster's CPU type
                # (an Intel host moved into an AMD cluster) goes Non Operational.
                h.status, h.op = "non_operational", None
                h.status_detail = "cpu_type_incompatible_with_cluster"
                self._touch(h)
                self._event(515, "warning", f"Host {h.name} moved to Non-Operational state as "
                                            "host does not meet the cluster's minimum CPU level. "
                                            f"Missing CPU features : {missing}", host=h)
                return
            h.status, h.op = "up", None
            h.status_detail = None
            self._touch(h)
            self._event(13, "normal", f"Status of host {h.name} was set to Up.", host=h)
        elif op == "install":
            self._step_install(h)

    def _step_deactivate(self, h: Host) -> None:
        blocking: list[Vm] = []
        for vm in list(self.vms.values()):
            if vm.host_id != h.id or vm.status not in _VM_RUNNING:
                continue
            target = self._migration_target(vm, h)
            if target is None:
                blocking.append(vm)
                continue
            self._move_running(vm, h, target)
            self._event(63, "normal", f"Migration completed (VM: {vm.name}, Source: {h.name}, "
                                      f"Destination: {target.name}, Duration: 1 second, Total: "
                                      "1 second, Actual downtime: 10ms)", vm=vm, host=target)
        if blocking:
            # The engine keeps the host in PreparingForMaintenance until the VMs are gone.
            if not h.maintenance_failed_reported:
                h.maintenance_failed_reported = True
                self._event(602, "error", f"Host {h.name} cannot change into maintenance mode - "
                                          "not all Vms have been migrated successfully. Consider "
                                          "manual intervention: stopping/migrating Vms running "
                                          f"on this host. (User: {self.user}).", host=h)
                self._touch(h)
            self._after("host", h.id, DURATIONS["deactivate"])
            return
        h.status, h.op = "maintenance", None
        self._touch(h)
        self._event(15, "normal", f"Host {h.name} was switched to Maintenance Mode.", host=h)

    def _migration_target(self, vm: Vm, source: Host) -> Host | None:
        # Host devices and vGPUs cannot be live-migrated; user_migratable VMs are not moved by
        # the engine on its own.
        if vm.affinity != "migratable" or vm.running_hostdevs or vm.running_mdevs:
            return None
        for cand in self.hosts.values():
            if cand.id == source.id or cand.status != "up" or cand.cluster_id != source.cluster_id:
                continue
            if vm.pinned_host_ids and cand.id not in vm.pinned_host_ids:
                continue
            return cand
        return None

    def _move_running(self, vm: Vm, source: Host, target: Host) -> None:
        for name in vm.running_hostdevs:
            self._in_use.pop((source.id, name), None)
        vm.running_hostdevs = []
        vm.host_id = target.id
        self._touch(vm)

    def _step_install(self, h: Host) -> None:
        args = h.op_args
        if h.op_stage == 0:
            if self._fails_install(h):
                h.status, h.op = "install_failed", None
                self._touch(h)
                self._event(505, "error", f"Host {h.name} installation failed. Failed to "
                                          "execute Ansible host-deploy role.", host=h)
                return
            # Host deploy: drop the previously applied args, add the configured ones.
            old, new = _split_args(h.stored_args), _split_args(h.custom_kernel_cmdline)
            try:
                self.roots.install(self.lab_host(h), remove=old, add=new)
            except (OSError, ValueError) as exc:
                h.status, h.op = "install_failed", None
                self._touch(h)
                self._event(505, "error", f"Host {h.name} installation failed. {exc}", host=h)
                return
            h.stored_args = h.custom_kernel_cmdline
            h.reinstallation_required = False
            if args.get("reboot", True):
                h.status, h.op_stage = "reboot", 1
                self._touch(h)
                self._after("host", h.id, DURATIONS["reboot"])
                return
            h.op_stage = 2
        if h.op_stage == 1:
            if self._never_returns(h):
                h.status, h.op = "non_responsive", None
                self._touch(h)
                self._event(12, "error", f"Host {h.name} is non responsive.", host=h)
                h.op_args = {}
                return
            h.booted_args = h.stored_args
            reported = self.roots.reboot(self.lab_host(h)) if self.roots.exists(h.name) else None
            h.reported_cmdline = reported
            self._refresh_devices(h.id)
        self._event(504, "normal", f"Host {h.name} installed", host=h)
        if args.get("activate", False):
            h.status, h.op, h.op_stage = "initializing", "activate", 0
            self._touch(h)
            self._after("host", h.id, DURATIONS["activate"])
        else:
            h.status, h.op = "maintenance", None
            self._touch(h)

    # ------------------------------------------------------------------ VMs

    def update_vm(self, vm_id: str, *, pinned_hosts: list[str] | None = None,
                  affinity: str | None = None, display_type: str | None = None,
                  cid: str | None = None) -> Vm:
        """pinned_hosts are host ids or names, already looked up by the caller's reader."""
        with self.lock:
            vm = self.vm(vm_id)
            if pinned_hosts is not None:
                ids: list[str] = []
                for ref in pinned_hosts:
                    if ref in self.hosts:
                        ids.append(ref)
                    else:
                        try:
                            ids.append(self.host_by_name(ref).id)
                        except EngineFault:
                            raise EngineFault(400, f"[Cannot edit VM. Host {ref} does not "
                                                   "exist.]") from None
                # UpdateVmCommand#isDedicatedVmForVdsChanged compares the pinned hosts as a set
                # (order aside): any change, adding a second host too, drops every host device.
                if len(ids) != len(vm.pinned_host_ids) or set(ids) != set(vm.pinned_host_ids):
                    if vm.host_devices:
                        self._detach_all(vm)
                vm.pinned_host_ids = ids
            if affinity is not None:
                if affinity not in ("migratable", "user_migratable", "pinned"):
                    raise EngineFault(400, f"Invalid value '{affinity}' for affinity.")
                vm.affinity = affinity
            if display_type is not None:
                if display_type not in ("vnc", "spice"):
                    raise EngineFault(400, f"Invalid value '{display_type}' for display type.")
                vm.display_type = display_type
            self._touch(vm)
            self._event(35, "normal", f"VM {vm.name} configuration was updated by {self.user}.",
                        vm=vm, cid=cid)
            return vm

    def _detach_all(self, vm: Vm) -> None:
        host_id = vm.hostdev_host_id
        names = list(vm.host_devices)
        for name in names:
            self._attached.pop((host_id or "", name), None)
        vm.host_devices.clear()
        vm.hostdev_host_id = None
        self._touch_devices(host_id)
        if names:
            self._event(10801, "normal", f"Host devices {', '.join(names)} were detached from "
                                         f"Vm {vm.name} by User {self.user}.", vm=vm)

    def _hostdev_preconditions(self, vm: Vm, verb: str) -> Host:
        """AbstractVmHostDevicesCommand: no hot-plug, and exactly one pinned host."""
        if vm.status != "down":
            raise EngineFault(409, f"[Cannot {verb} Host devices because the VM is in "
                                   f"{_status_word(vm.status)} status.]")
        if not vm.pinned_host_ids:
            raise EngineFault(409, f"[Cannot {verb} Host devices. VM must be pinned to a host.]")
        if len(vm.pinned_host_ids) > 1:
            raise EngineFault(409, f"[Cannot {verb} Host devices. VM must be pinned to a single "
                                   "host.]")
        return self.host(vm.pinned_host_ids[0])

    def attach_host_device(self, vm_id: str, *, name: str | None = None,
                           dev_id: str | None = None, cid: str | None = None) -> str:
        """Returns the attached device's name. `id` wins over `name`, as in the engine."""
        with self.lock:
            vm = self.vm(vm_id)
            if name is None and dev_id is None:
                raise EngineFault(400, "Host Device [id|name] required for add",
                                  reason="Incomplete parameters")
            host = self._hostdev_preconditions(vm, "add")
            if dev_id is not None:
                name = name_from_hex(dev_id) or ""
            assert name is not None
            devices = self.devices(host.id)
            if name not in devices:
                raise EngineFault(400, "[Cannot add Host devices. One or more of specified host "
                                       "devices not found.]")
            if vm.hostdev_host_id not in (None, host.id):
                self._detach_all(vm)
            # AddVmHostDevicesCommand refuses only a SCSI device a running VM uses; a PCI device
            # may be configured on several VMs, and the scheduler's HostDevice filter refuses
            # the second start while the first VM runs.
            group = self._group_of(host.id, devices[name])
            for member in group:
                owner = self._in_use.get((host.id, member))
                if devices[member].capability == "scsi" and owner not in (None, vm.id):
                    raise EngineFault(409, "[Cannot add Host devices. One or more configured host "
                                           "devices are already used by a VM or a Storage "
                                           "Domain.]")
            self._attach_group(vm, host.id, name)
            self._touch(vm)
            self._touch_devices(host.id)
            self._event(10800, "normal", f"Host devices {name} were attached to Vm {vm.name} "
                                         f"by User {self.user}.", vm=vm, host=host, cid=cid)
            return name

    def _group_of(self, host_id: str, device: LabDevice) -> list[str]:
        if device.capability == "pci" and device.iommu_group is not None:
            return self._groups[host_id].get(device.iommu_group, [device.name])
        return [device.name]

    def _attach_group(self, vm: Vm, host_id: str, name: str) -> None:
        vm.hostdev_host_id = host_id
        device = self._devices[host_id][name]
        for member in self._group_of(host_id, device):
            if member == name:
                vm.host_devices[member] = False
            else:
                vm.host_devices.setdefault(member, True)
            self._attached[(host_id, member)] = vm.id

    def detach_host_device(self, vm_id: str, dev_id: str, cid: str | None = None) -> None:
        with self.lock:
            vm = self.vm(vm_id)
            name = name_from_hex(dev_id)
            if name is None or name not in vm.host_devices:
                raise not_found("host device")
            host = self._hostdev_preconditions(vm, "remove")
            host_id = vm.hostdev_host_id or host.id
            device = self.devices(host_id).get(name)
            group = self._group_of(host_id, device) if device else [name]
            if len(group) > 1:
                vm.host_devices[name] = True
                members = [m for m in group if m in vm.host_devices]
                if all(vm.host_devices[m] for m in members):
                    for m in members:
                        del vm.host_devices[m]
                        self._attached.pop((host_id, m), None)
            else:
                del vm.host_devices[name]
                self._attached.pop((host_id, name), None)
            if not vm.host_devices:
                vm.hostdev_host_id = None
            self._touch(vm)
            self._touch_devices(host_id)
            self._event(10801, "normal", f"Host devices {name} were detached from Vm {vm.name} "
                                         f"by User {self.user}.", vm=vm, host=host, cid=cid)

    @staticmethod
    def _check_mdev_params(params: dict[str, str], verb: str) -> dict[str, str]:
        if not params.get("mdevType") or any(v is None for v in params.values()):
            raise EngineFault(400, f"[Cannot {verb} VM mediated device. Mediated device ID or "
                                   "VM/Template ID or a parameter value is null.]")
        if "nodisplay" in params:
            params["nodisplay"] = "true" if params["nodisplay"].lower() in ("true", "1") else "false"
        return params

    def add_mdev(self, vm_id: str, params: dict[str, str], cid: str | None = None) -> str:
        with self.lock:
            vm = self.vm(vm_id)
            params = self._check_mdev_params(dict(params), "add")
            mdev_id = str(uuid.uuid4())
            vm.mdevs[mdev_id] = params
            self._touch(vm)
            # No audit event: the engine's {Add,Update,Remove}MdevCommand log none, so an
            # out-of-band vGPU change is only seen by reading the VM (controller resync).
            return mdev_id

    def update_mdev(self, vm_id: str, mdev_id: str, params: dict[str, str],
                    cid: str | None = None) -> None:
        with self.lock:
            vm = self.vm(vm_id)
            if mdev_id not in vm.mdevs:
                raise not_found("mediated device")
            # The engine builds a new map from the request: keys not sent are dropped.
            vm.mdevs[mdev_id] = self._check_mdev_params(dict(params), "update")
            self._touch(vm)
            # No audit event: the engine's {Add,Update,Remove}MdevCommand log none, so an
            # out-of-band vGPU change is only seen by reading the VM (controller resync).

    def remove_mdev(self, vm_id: str, mdev_id: str, cid: str | None = None) -> None:
        with self.lock:
            vm = self.vm(vm_id)
            if mdev_id not in vm.mdevs:
                raise not_found("mediated device")
            del vm.mdevs[mdev_id]
            self._touch(vm)
            # No audit event: the engine's {Add,Update,Remove}MdevCommand log none, so an
            # out-of-band vGPU change is only seen by reading the VM (controller resync).

    def add_console(self, vm_id: str, protocol: str, cid: str | None = None) -> str:
        with self.lock:
            vm = self.vm(vm_id)
            if protocol not in ("vnc", "spice"):
                raise EngineFault(400, "Graphics console [protocol] required for add",
                                  reason="Incomplete parameters")
            if protocol in vm.consoles:
                raise EngineFault(409, f"[Cannot add Graphics Device. VM {vm.name} already has "
                                       f"a {protocol} console.]")
            vm.consoles.append(protocol)
            self._touch(vm)
            self._event(35, "normal", f"VM {vm.name} configuration was updated by {self.user}.",
                        vm=vm, cid=cid)
            return protocol

    def remove_console(self, vm_id: str, console_id: str, cid: str | None = None) -> None:
        with self.lock:
            vm = self.vm(vm_id)
            protocol = name_from_hex(console_id)
            if protocol not in vm.consoles:
                raise not_found("graphics console")
            vm.consoles.remove(protocol)
            self._touch(vm)
            self._event(35, "normal", f"VM {vm.name} configuration was updated by {self.user}.",
                        vm=vm, cid=cid)

    # --- VM power

    def _allocate(self, vm: Vm, host: Host) -> list[list[str]] | None:
        return allocate_vgpus(vm, host, self.devices(host.id), self._mdev_usage.get(host.id, {}))

    def start_vm(self, vm_id: str, cid: str | None = None) -> None:
        with self.lock:
            vm = self.vm(vm_id)
            if vm.status != "down":
                raise EngineFault(409, "[Cannot run VM. VM is running.]")
            candidates = [self.hosts[h] for h in vm.pinned_host_ids if h in self.hosts]
            if not candidates:
                candidates = [h for h in self.hosts.values() if h.cluster_id == vm.cluster_id]
            reasons: list[str] = []
            chosen: Host | None = None
            alloc: list[list[str]] | None = []
            for host in candidates:
                if host.status != "up":
                    continue   # the scheduler only considers hosts that are Up
                if vm.host_devices:
                    if host.id != vm.hostdev_host_id:
                        continue   # HostDevice filter: only the host the devices belong to
                    if not self.passthrough_enabled(host):
                        reasons.append(f"The host {host.name} did not satisfy internal filter "
                                       "HostDevice because it does not support host device "
                                       "passthrough.")
                        continue
                    busy = [n for n in vm.host_devices
                            if self._in_use.get((host.id, n)) not in (None, vm.id)]
                    if busy:
                        reasons.append(f"The host {host.name} did not satisfy internal filter "
                                       "HostDevice because some of the required host devices "
                                       "are unavailable.")
                        continue
                if vm.mdevs:
                    alloc = self._allocate(vm, host)
                    if alloc is None:
                        types = ", ".join(sorted({p["mdevType"] for p in vm.mdevs.values()}))
                        reasons.append(f"The host {host.name} did not satisfy internal filter "
                                       "MDevice because some of the required mDev devices are "
                                       f"unavailable ({types}).")
                        continue
                chosen = host
                break
            if chosen is None:
                raise EngineFault(409, "[" + ", ".join(
                    ["Cannot run VM. There is no host that satisfies current scheduling "
                     "constraints. See below for details:", *reasons]) + "]")
            vm.status, vm.host_id = "wait_for_launch", chosen.id
            # vdsm creates each mdev with the UUID of the VM's mediated device (the engine writes
            # it as the hostdev's source address; vdsm's spawn_mdev takes it from there).
            vm.running_mdevs = [[mtype, gpu, mid] for mid, (mtype, gpu) in zip(vm.mdevs, alloc or [])]
            for mtype, gpu, mdev_uuid in vm.running_mdevs:
                usage = self._mdev_usage[chosen.id].setdefault(gpu, [mtype, 0])
                usage[0], usage[1] = mtype, usage[1] + 1
                try:
                    self.roots.create_mdev(self.lab_host(chosen), gpu, mtype, mdev_uuid, vm.name)
                except ValueError:
                    pass   # the host tree disagrees; the engine's own accounting stays authoritative
            vm.running_hostdevs = [n for n, ph in vm.host_devices.items()] if vm.host_devices else []
            for name in vm.running_hostdevs:
                self._in_use[(chosen.id, name)] = vm.id
            if vm.running_mdevs or vm.running_hostdevs:
                self._touch_devices(chosen.id)
            vm.op, vm.op_stage = "start", 0
            self._touch(vm)
            self._event(153, "normal", f"VM {vm.name} was started by {self.user} "
                                       f"(Host: {chosen.name}).", vm=vm, host=chosen, cid=cid)
            self._after("vm", vm.id, DURATIONS["vm_launch"])

    def _release(self, vm: Vm) -> None:
        host_id = vm.host_id
        if host_id:
            usage = self._mdev_usage.get(host_id, {})
            host = self.hosts[host_id]
            for entry in vm.running_mdevs:
                gpu = entry[1]
                if len(entry) > 2:
                    self.roots.remove_mdev(self.lab_host(host), entry[2])
                if gpu in usage:
                    usage[gpu][1] -= 1
                    if usage[gpu][1] <= 0:
                        del usage[gpu]
            for name in vm.running_hostdevs:
                if self._in_use.get((host_id, name)) == vm.id:
                    del self._in_use[(host_id, name)]
            if vm.running_mdevs or vm.running_hostdevs:
                self._touch_devices(host_id)
        vm.running_mdevs, vm.running_hostdevs = [], []
        vm.status, vm.host_id, vm.op = "down", None, None

    def stop_vm(self, vm_id: str, cid: str | None = None) -> None:
        with self.lock:
            vm = self.vm(vm_id)
            if vm.status == "down":
                raise EngineFault(409, "[Cannot stop VM. VM is not running.]")
            host = self.hosts.get(vm.host_id or "")
            self._release(vm)
            self._touch(vm)
            self._event(33, "normal", f"VM {vm.name} powered off by {self.user} (Host: "
                                      f"{host.name if host else 'none'}).", vm=vm, host=host,
                        cid=cid)
            self._event(61, "normal", f"VM {vm.name} is down. Exit message: Admin shut down "
                                      "from the engine", vm=vm)
            self._recheck_maintenance(host)

    def shutdown_vm(self, vm_id: str, cid: str | None = None) -> None:
        with self.lock:
            vm = self.vm(vm_id)
            if vm.status == "down":
                raise EngineFault(409, "[Cannot shutdown VM. VM is not running.]")
            if vm.status == "powering_down":
                return
            host = self.hosts.get(vm.host_id or "")
            vm.status, vm.op, vm.op_stage = "powering_down", "shutdown", 0
            self._touch(vm)
            self._event(73, "normal", f"VM shutdown initiated by {self.user} on VM {vm.name} "
                                      f"(Host: {host.name if host else 'none'}).", vm=vm,
                        host=host, cid=cid)
            self._after("vm", vm.id, DURATIONS["vm_shutdown"])

    def _recheck_maintenance(self, host: Host | None) -> None:
        if host is not None and host.status == "preparing_for_maintenance" and host.op:
            self._schedule("host", host.id, time.monotonic())

    def _step_vm(self, vm: Vm) -> None:
        if vm.op == "start":
            if vm.op_stage == 0:
                vm.status, vm.op_stage = "powering_up", 1
                self._touch(vm)
                self._after("vm", vm.id, DURATIONS["vm_power_up"])
            else:
                vm.status, vm.op = "up", None
                self._touch(vm)
                host = self.hosts.get(vm.host_id or "")
                self._event(32, "normal", f"VM {vm.name} started on Host "
                                          f"{host.name if host else ''}", vm=vm, host=host)
        elif vm.op == "shutdown":
            host = self.hosts.get(vm.host_id or "")
            self._release(vm)
            self._touch(vm)
            self._event(61, "normal", f"VM {vm.name} is down. Exit message: User shut down "
                                      "from within the guest", vm=vm)
            self._recheck_maintenance(host)

    # ------------------------------------------------------------------ out-of-band drift

    def drift(self, kind: str, *, host: str | None = None, vm: str | None = None,
              value: str | None = None) -> str:
        """Make a change behind the reconciler's back (demos); returns what was done."""
        with self.lock:
            if kind == "kernel-args":
                h = self.host_by_name(host) if host else next(iter(self.hosts.values()))
                args = _split_args(h.custom_kernel_cmdline)
                new = value if value is not None else " ".join(args[:-1])
                self.update_host(h.id, custom_kernel_cmdline=new)
                return f"host {h.name}: custom_kernel_cmdline set to {new!r}"
            if kind == "vgpu-removed":
                v = self.vm_by_name(vm) if vm else next(
                    (x for x in self.vms.values() if x.mdevs), None)
                if v is None or not v.mdevs:
                    raise EngineFault(400, "no VM with mediated devices to drift")
                for mid in list(v.mdevs):
                    self.remove_mdev(v.id, mid)
                return f"vm {v.name}: mediated devices removed"
            if kind == "device-detached":
                v = self.vm_by_name(vm) if vm else next(
                    (x for x in self.vms.values()
                     if any(not p for p in x.host_devices.values())), None)
                if v is None or not v.host_devices:
                    raise EngineFault(400, "no VM with host devices to drift")
                name = next(n for n, ph in v.host_devices.items() if not ph)
                host_id = v.hostdev_host_id or ""
                device = self.devices(host_id).get(name) if host_id in self.hosts else None
                group = self._group_of(host_id, device) if device else [name]
                for m in group:
                    if m in v.host_devices:
                        del v.host_devices[m]
                        self._attached.pop((host_id, m), None)
                if not v.host_devices:
                    v.hostdev_host_id = None
                self._touch(v)
                self._touch_devices(host_id)
                self._event(10801, "normal", f"Host devices {name} were detached from Vm "
                                             f"{v.name} by User {self.user}.", vm=v)
                return f"vm {v.name}: host device {name} detached"
            raise EngineFault(400, f"unknown drift kind {kind!r}")

    # ------------------------------------------------------------------ for edits.py

    def touch(self, entity: Host | Vm) -> None:
        self._touch(entity)

    @property
    def revision(self) -> int:
        """Grows with every change (entities and device lists)."""
        return self._rev

    def refresh_host_devices(self, host_id: str) -> None:
        self._refresh_devices(host_id)

    def log_event(self, code: int, severity: str, description: str, *, host: Host | None = None,
                  vm: Vm | None = None, cid: str | None = None) -> None:
        self._event(code, severity, description, host=host, vm=vm, cid=cid)

    def host_ref_id(self, host_id: str | None, name: str | None) -> str | None:
        """The id of a host given by id or by name (None if there is no such host)."""
        if host_id is not None:
            return host_id if host_id in self.hosts else None
        return next((h.id for h in self.hosts.values() if h.name == name), None)

    def replace_mdevs(self, vm_id: str, devices: list[dict[str, str]]) -> None:
        """UpdateVmCommand#updateMdevDevices: the converted devices replace all the VM's."""
        vm = self.vm(vm_id)
        vm.mdevs = {str(uuid.uuid4()): self._check_mdev_params(dict(d), "update")
                    for d in devices}
        self._touch(vm)

    # ------------------------------------------------------------------ search helpers

    def iter_events(self) -> Iterable[Event]:
        return reversed(self.events)
