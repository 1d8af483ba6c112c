"""plan(desired, observed, applied) -> Plan: pure, deterministic, no I/O and no clock.

Order of the result: host actions of hosts that need no reboot first, then host cycles wave by wave
(within a host: set cmdline, write modprobe file, dracut, set placement, cycle), then VM actions by
VM name (pin, detach, attach, mediated devices, console; wrapped in stop/start when the VM's
`restart: allowed` lets us). Everything is looked up through dicts built once, so the planner is
linear in the size of the fleet.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reconciler.observe.facts import Cluster, Host, HostDevice, Observed, ProbeFacts, Vm
from reconciler.plan import checks
from reconciler.plan.actions import (Action, AddMediatedDevice, AttachHostDevice, DetachHostDevice,
                                     Disruption, HostCycle, PinVm, Reason, RegenerateInitramfs,
                                     RemoveMediatedDevice, SetConsoleVnc, SetKernelCmdline,
                                     SetVgpuPlacement, StartVm, StopVm, UpdateMediatedDevice,
                                     Verification, WriteModprobeFile)
from reconciler.plan.capacity import Pool, build_pool
from reconciler.plan.expand import MODPROBE_PATH, HostDesired, expand_host, render_modprobe
from reconciler.plan.fingerprint import (canonical_json, fingerprint, host_snapshot, sha256_text,
                                         vm_snapshot)
from reconciler.plan.kernel import edit_cmdline, unmet, wants_for
from reconciler.plan.result import DriftItem, Note, Plan, SeatCount, Summary, Wave
from reconciler.plan.waves import CycleRequest, plan_waves
from reconciler.spec.model import DesiredState, VmSpec

NEXT_START = "takes effect at next start"
CYCLE_STATES = frozenset({"up", "maintenance"})


def _is_down(vm: Vm) -> bool:
    return vm.status == "down"


def _norm_module(name: str) -> str:
    return name.replace("-", "_")


@dataclass
class _HostWork:
    host: Host
    desired: HostDesired
    reason: Reason
    config: list[Action] = field(default_factory=list)
    cycle: HostCycle | None = None
    stop_vms: list[Vm] = field(default_factory=list)


class _Planner:
    def __init__(self, desired: DesiredState, observed: Observed,
                 applied: Mapping[str, str]) -> None:
        self.desired = desired
        self.observed = observed
        self.applied = applied
        self.hosts = {h.name: h for h in observed.hosts}
        self.vms = {v.name: v for v in observed.vms}
        self.probes = {p.host: p for p in observed.probes}
        self.clusters: dict[str, Cluster] = {c.name: c for c in observed.clusters}
        self.hosts_by_cluster: dict[str, list[Host]] = {}
        for h in sorted(observed.hosts, key=lambda h: h.name):
            self.hosts_by_cluster.setdefault(h.cluster, []).append(h)
        self.pools: dict[str, Pool] = {}
        self.capacity_clusters: set[str] = set()
        self.cluster_types: dict[str, frozenset[str]] = {}
        self.drift: list[DriftItem] = []
        self.notes: list[Note] = []
        self.depends: set[str] = set()
        self.desired_fps: dict[str, str] = {}
        self.host_desired: dict[str, HostDesired] = {}
        self.host_work: dict[str, _HostWork] = {}
        self.stopped_for_cycle: dict[str, str] = {}   # vm -> host
        self.vm_actions: list[Action] = []
        self.started: set[str] = set()
        self.seat_delta: Counter[str] = Counter()
        self.desired_vms: dict[str, VmSpec] = {v.name: v for v in desired.vms}
        self.vms_on_host: dict[str, list[Vm]] = {}
        for vm in observed.vms:
            if vm.host:
                self.vms_on_host.setdefault(vm.host, []).append(vm)

    # ---- helpers --------------------------------------------------------------------------------

    def _classify(self, key: str, settings: object) -> tuple[Reason, str]:
        fp = sha256_text(canonical_json(settings))
        self.desired_fps[key] = fp
        if self.applied.get(key) == fp:
            return Reason.DRIFT, "drift"
        return Reason.SPEC_CHANGE, "pending"

    def _block(self, key: str, message: str, location: str | None) -> None:
        self.drift.append(DriftItem(key, "blocked", message, location))

    def _pool(self, cluster: str) -> Pool:
        pool = self.pools.get(cluster)
        if pool is None:
            pool = build_pool((h.name, h.devices) for h in self.hosts_by_cluster.get(cluster, ()))
            self.pools[cluster] = pool
        return pool

    def _cluster_types(self, cluster: str) -> frozenset[str]:
        """vGPU types any GPU of the cluster offers (cheaper than a capacity pool)."""
        types = self.cluster_types.get(cluster)
        if types is None:
            types = frozenset(t.name for h in self.hosts_by_cluster.get(cluster, ())
                              for d in h.devices for t in d.mdev_types)
            self.cluster_types[cluster] = types
        return types

    def _probe(self, host: str) -> ProbeFacts | None:
        return self.probes.get(host)

    # ---- hosts ----------------------------------------------------------------------------------

    def plan_hosts(self) -> None:
        profiles = self.desired.host_profiles
        vgpu_clusters = {self.vms[v.name].cluster for v in self.desired.vms
                         if v.vgpu is not None and v.name in self.vms}
        for name in sorted(self.hosts):
            host = self.hosts[name]
            hd = expand_host(host, profiles) if profiles else None
            if hd is None:
                continue
            self.host_desired[name] = hd
            self._plan_host(host, hd, host.cluster in vgpu_clusters)

    def _plan_host(self, host: Host, hd: HostDesired, vgpu_in_cluster: bool) -> None:
        key = f"host:{host.name}"
        reason, status = self._classify(key, hd)
        loc = hd.location
        blockers = list(hd.conflicts)
        probe = self._probe(host.name)
        parts: list[str] = []
        work = _HostWork(host, hd, reason)
        needs_boot: list[str] = []
        expect_args: tuple[str, ...] = ()
        expect_absent: tuple[str, ...] = ()
        cmdline_edit = False
        kernel_unbooted = False

        if hd.kernel is not None:
            cluster = self.clusters.get(host.cluster)
            wants = wants_for(hd.kernel, host.cpu_vendor, cluster.architecture if cluster else None,
                              host.cpu_vendor_note)
            if wants.problem:
                blockers.append(f"host {host.name}: {wants.problem}")
            else:
                new = edit_cmdline(host.custom_kernel_cmdline, wants.wants)
                if new != host.custom_kernel_cmdline:
                    cmdline_edit = True
                    parts.append(f"engine kernel cmdline {host.custom_kernel_cmdline!r} -> {new!r}")
                    work.config.append(SetKernelCmdline(
                        target=key, before=host.custom_kernel_cmdline, after=new,
                        disruption=Disruption.HOST_REBOOT, reason=reason,
                        description=f"set engine custom kernel cmdline to {new!r}",
                        verify=(Verification(key, "custom_kernel_cmdline", "eq", new),),
                        cmdline=new))
                booted = (probe.proc_cmdline if probe is not None and probe.ok
                          and probe.proc_cmdline is not None else host.reported_kernel_cmdline)
                if booted is None:
                    self.notes.append(Note(key, "booted kernel cmdline unknown (not reported)"))
                    missing = () if not cmdline_edit else wants.add_tokens
                else:
                    missing = unmet(booted, wants.wants)
                if missing:
                    needs_boot.append("booted cmdline needs " + " ".join(missing))
                    if not cmdline_edit:
                        kernel_unbooted = True
                        parts.append("kernel args configured but not booted: " + " ".join(missing))
                elif cmdline_edit:
                    needs_boot.append("engine cmdline changes")
                expect_args = wants.add_tokens
                expect_absent = wants.absent_keys

        modules_absent: tuple[str, ...] = ()
        if hd.modprobe is not None:
            content = render_modprobe(hd.modprobe)
            blacklist = sorted({_norm_module(m) for m in hd.modprobe.blacklist})
            modules_absent = tuple(blacklist)
            if probe is None or not probe.ok:
                why = probe.reason if probe is not None and probe.reason else "host not probed"
                self.notes.append(Note(key, f"modprobe file not checked ({why})"))
            else:
                current = next((f for f in probe.modprobe_files if f.path == MODPROBE_PATH), None)
                differs = current is None or current.sha256 != sha256_text(content)
                lacking = ([] if probe.initramfs_blacklist is None else
                           [m for m in blacklist if m not in probe.initramfs_blacklist])
                if differs or lacking:
                    why = ("missing" if current is None else "differs") if differs else (
                        "initramfs lacks blacklist " + ", ".join(lacking))
                    parts.append(f"modprobe file {MODPROBE_PATH}: {why}")
                    needs_boot.append("modprobe/initramfs changes")
                    work.config.append(WriteModprobeFile(
                        target=key, before=current.sha256 if current else None,
                        after=sha256_text(content), disruption=Disruption.HOST_REBOOT,
                        reason=reason, description=f"write {MODPROBE_PATH}",
                        verify=(Verification(key, f"probe.modprobe_files[{MODPROBE_PATH}].sha256",
                                             "eq", sha256_text(content)),),
                        path=MODPROBE_PATH, content=content))
                    work.config.append(RegenerateInitramfs(
                        target=key, before=None, after=None, disruption=Disruption.HOST_REBOOT,
                        reason=reason, description="regenerate the initramfs (dracut --force)",
                        verify=tuple(Verification(key, "probe.initramfs_blacklist", "contains", m)
                                     for m in blacklist)))
                loaded = [m for m in blacklist if m in probe.loaded_modules]
                if loaded and not (differs or lacking):
                    needs_boot.append("blacklisted module loaded: " + ", ".join(loaded))
                    parts.append("blacklisted module(s) still loaded: " + ", ".join(loaded))

        if hd.vgpu_placement is not None and hd.vgpu_placement != host.vgpu_placement:
            parts.append(f"vGPU placement {host.vgpu_placement} -> {hd.vgpu_placement}")
            work.config.append(SetVgpuPlacement(
                target=key, before=host.vgpu_placement, after=hd.vgpu_placement,
                disruption=Disruption.NONE, reason=reason,
                description=f"set vGPU placement to {hd.vgpu_placement}",
                verify=(Verification(key, "vgpu_placement", "eq", hd.vgpu_placement),),
                placement=hd.vgpu_placement))

        blocker, note = checks.vgpu_manager_problem(hd.vgpu_manager, probe)
        if blocker:
            blockers.append(f"host {host.name}: {blocker}")
        if note:
            self.notes.append(Note(key, note))
        if hd.vgpu_manager != "ignore" or hd.vgpu_placement is not None or vgpu_in_cluster:
            vfs = checks.per_vf_interface(probe)
            if vfs:
                blockers.append(
                    f"host {host.name}: GPU functions {', '.join(vfs)} use the per-VF vGPU "
                    "interface (creatable_vgpu_types, no mdev bus), which the engine cannot drive; "
                    "their vGPUs cannot be managed here")

        if needs_boot and host.status not in CYCLE_STATES and hd.reboot == "allowed":
            blockers.append(f"host {host.name} is {host.status}; a host cycle needs it up or in "
                            "maintenance")
        for msg in blockers:
            self._block(key, msg, loc)
        if blockers:
            return

        if needs_boot:
            if hd.reboot == "never":
                parts.append("needs a reboot (" + "; ".join(needs_boot) +
                             "), but rollout.reboot is never")
            else:
                held = self._pinned_vms(host)
                waiting = [v for v in held if not self._may_stop(v)]
                if waiting:
                    parts.append("held: VM(s) " + ", ".join(v.name for v in waiting) +
                                 " run pinned here and cannot migrate; stop them or allow "
                                 "restarts (restart: allowed) to let the host reboot")
                else:
                    work.stop_vms = held
                    steps = ("deactivate", "install", "activate", "verify")
                    cycle_note: str | None
                    if cmdline_edit:
                        cycle_note = None
                    elif kernel_unbooted:
                        cycle_note = "configured but not booted"
                    else:
                        cycle_note = "boots the new initramfs / unloads blacklisted modules"
                    desc = ("host cycle: " + " -> ".join(steps)
                            + (f" ({cycle_note})" if cycle_note else ""))
                    verify = [Verification(key, "status", "eq", "up"),
                              Verification(key, "reinstallation_required", "eq", False)]
                    verify += [Verification(key, "booted_cmdline", "contains", t)
                               for t in expect_args]
                    verify += [Verification(key, "booted_cmdline", "not-contains", t)
                               for t in expect_absent]
                    verify += [Verification(key, "probe.loaded_modules", "not-contains", m)
                               for m in modules_absent]
                    work.cycle = HostCycle(
                        target=key, before=host.status, after="up",
                        disruption=Disruption.HOST_REBOOT, reason=reason, description=desc,
                        verify=tuple(verify), note=cycle_note, steps=steps, expect_args=expect_args,
                        expect_absent=expect_absent, expect_modules_absent=modules_absent,
                        cmdline_edit=cmdline_edit)
        if parts:
            self.drift.append(DriftItem(key, status, "; ".join(parts), loc))  # type: ignore[arg-type]
        if work.config or work.cycle:
            self.host_work[host.name] = work
            self.depends.add(key)

    def _pinned_vms(self, host: Host) -> list[Vm]:
        """Running VMs on `host` that cannot migrate away (pinned, holding host devices, or
        running vGPUs: the engine does not live-migrate a VM with mediated devices)."""
        out = []
        for vm in self.vms_on_host.get(host.name, ()):
            if _is_down(vm):
                continue
            if vm.affinity == "pinned" or any(not d.placeholder for d in vm.host_devices) \
                    or vm.mediated_devices:
                out.append(vm)
        return sorted(out, key=lambda v: v.name)

    def _may_stop(self, vm: Vm) -> bool:
        spec = self.desired_vms.get(vm.name)
        return spec is not None and spec.restart == "allowed"

    def schedule_cycles(self) -> tuple[tuple[Wave, ...], list[Action]]:
        requests = [CycleRequest(w.host.name, w.host.cluster, w.host.status == "up",
                                 w.desired.max_unavailable)
                    for w in self.host_work.values() if w.cycle is not None]
        waves = plan_waves(sorted(requests, key=lambda r: r.host), self.hosts_by_cluster)
        for host, why in sorted(waves.held.items()):
            work = self.host_work[host]
            work.cycle = None
            work.stop_vms = []
            self._block(f"host:{host}", why, work.desired.location)
        ordered: list[Action] = []
        for name in sorted(self.host_work):
            work = self.host_work[name]
            if work.cycle is None:
                ordered.extend(work.config)
        out_waves = []
        for number, hosts in enumerate(waves.waves, start=1):
            out_waves.append(Wave(number, hosts))
            for name in hosts:
                work = self.host_work[name]
                self.depends.update(f"vm:{v.name}" for v in self.vms_on_host.get(name, ()))
                for vm in work.stop_vms:
                    self.stopped_for_cycle[vm.name] = name
                    ordered.append(self._stop(vm, self.desired_vms[vm.name],
                                              f"so that host {name} can reboot", number))
                ordered.extend(replace(a, wave=number) for a in work.config)
                assert work.cycle is not None
                ordered.append(replace(work.cycle, wave=number))
        return tuple(out_waves), ordered

    # ---- VMs ------------------------------------------------------------------------------------

    def _stop(self, vm: Vm, spec: VmSpec, why: str, wave: int | None = None) -> StopVm:
        key = f"vm:{vm.name}"
        return StopVm(target=key, before=vm.status, after="down",
                      disruption=Disruption.VM_RESTART, reason=Reason.SPEC_CHANGE,
                      description=f"stop VM {vm.name} ({why}; restart: {spec.restart})",
                      verify=(Verification(key, "status", "eq", "down"),), wave=wave,
                      host=vm.host)

    def plan_vms(self) -> None:
        for spec in sorted(self.desired.vms, key=lambda v: v.name):
            self._plan_vm(spec)
            vm = self.vms.get(spec.name)
            if vm is not None and vm.name in self.stopped_for_cycle and vm.name not in self.started:
                # stopped so that its host could reboot: bring it back even if nothing else changes
                self.vm_actions.append(self._start(vm, spec, Reason.SPEC_CHANGE,
                                                   "after its host's cycle"))

    def _plan_vm(self, spec: VmSpec) -> None:
        key = f"vm:{spec.name}"
        loc = str(spec.location) if spec.location else None
        vm = self.vms.get(spec.name)
        if vm is None:
            self._block(key, f"VM {spec.name} does not exist in the engine"
                        + checks.did_you_mean(spec.name, self.vms), loc)
            return
        deps = {key}
        reason, status = self._classify(key, spec)
        blockers: list[str] = []
        hostdev: list[Action] = []       # need the VM down (the engine refuses otherwise)
        next_start: list[Action] = []    # accepted while up, effective at next start
        parts: list[str] = []

        if spec.passthrough is not None:
            deps.add(f"host:{spec.passthrough.host}")
            self._plan_passthrough(vm, spec, reason, blockers, hostdev, parts)
        elif any(not d.placeholder for d in vm.host_devices):
            self.drift.append(DriftItem(key, "unmanaged", "host devices " + ", ".join(
                sorted(d.name for d in vm.host_devices if not d.placeholder)) +
                " attached; the spec does not manage this VM's passthrough", loc))
        adds: list[AddMediatedDevice] = []
        if spec.vgpu is not None:
            adds = self._plan_vgpu(vm, spec, reason, blockers, next_start, parts)
        elif vm.mediated_devices:
            self.drift.append(DriftItem(key, "unmanaged", "vGPUs " + ", ".join(
                sorted(m.mdev_type for m in vm.mediated_devices)) +
                " attached; the spec does not manage this VM's vGPUs", loc))

        for msg in blockers:
            self._block(key, msg, loc)
        if blockers:
            return
        if adds:
            pool = self._pool(vm.cluster)
            assert spec.vgpu is not None
            if pool.reserve(spec.vgpu.type, len(adds)) is None:
                self._block(key, f"not enough {spec.vgpu.type} capacity in cluster {vm.cluster}: "
                            f"{len(adds)} more instance(s) wanted, "
                            f"{pool.seats_left(spec.vgpu.type)} left (available_instances, one vGPU "
                            "type per physical GPU)", loc)
                return
        if not (hostdev or next_start):
            return
        actions = self._gate(vm, spec, reason, hostdev, next_start, parts)
        if actions:
            self.depends.update(deps)
            if any(isinstance(a, AddMediatedDevice) for a in actions) \
                    and vm.cluster not in self.capacity_clusters:
                # seats were counted on every GPU of the cluster
                self.capacity_clusters.add(vm.cluster)
                self.depends.update(f"host:{h.name}"
                                    for h in self.hosts_by_cluster.get(vm.cluster, ()))
        for a in actions:
            if isinstance(a, AddMediatedDevice):
                self.seat_delta[a.mdev_type] += 1
            elif isinstance(a, RemoveMediatedDevice):
                self.seat_delta[a.mdev_type] -= 1
        self.vm_actions.extend(actions)
        self.drift.append(DriftItem(key, status, "; ".join(parts), loc))  # type: ignore[arg-type]

    def _gate(self, vm: Vm, spec: VmSpec, reason: Reason, hostdev: list[Action],
              next_start: list[Action], parts: list[str]) -> list[Action]:
        """Apply the restart policy: which changes run now, and around which stop/start."""
        stopped = vm.name in self.stopped_for_cycle
        start: list[Action] = []
        if stopped:
            start = [self._start(vm, spec, reason, "after its host's cycle")]
        if _is_down(vm) or stopped:
            return hostdev + next_start + start
        if spec.restart == "allowed":
            stop = self._stop(vm, spec, "to apply device changes")
            stop = replace(stop, reason=reason)
            return [stop] + hostdev + next_start + [self._start(vm, spec, reason,
                                                                "after device changes")]
        if spec.restart == "whenDown":
            if hostdev:
                parts.append("host-device changes wait for the VM to be down (restart: whenDown; "
                             "the engine refuses them while it runs)")
            return [replace(a, note=NEXT_START) for a in next_start]
        parts.append(f"VM is {vm.status} and restart is never: changes wait until it is down")
        return []

    def _start(self, vm: Vm, spec: VmSpec, reason: Reason, why: str) -> StartVm:
        key = f"vm:{vm.name}"
        host = spec.passthrough.host if spec.passthrough else vm.host
        self.started.add(vm.name)
        return StartVm(target=key, before="down", after="up", disruption=Disruption.VM_RESTART,
                       reason=reason, description=f"start VM {vm.name} ({why})",
                       verify=(Verification(key, "status", "eq", "up"),), host=host)

    def _plan_passthrough(self, vm: Vm, spec: VmSpec, reason: Reason, blockers: list[str],
                          hostdev: list[Action], parts: list[str]) -> None:
        assert spec.passthrough is not None
        key = f"vm:{vm.name}"
        host_name = spec.passthrough.host
        host = self.hosts.get(host_name)
        if host is None:
            blockers.append(f"passthrough host {host_name} does not exist"
                            + checks.did_you_mean(host_name, self.hosts))
            return
        devices = {d.name: d for d in host.devices}
        wanted: list[HostDevice] = []
        for name in spec.passthrough.devices:
            dev = devices.get(name)
            if dev is None:
                blockers.append(f"device {name} does not exist on host {host_name}"
                                + checks.did_you_mean(name, devices))
            else:
                wanted.append(dev)
        if len(wanted) != len(spec.passthrough.devices):
            return
        hd = self.host_desired.get(host_name)
        blockers.extend(checks.passthrough_device_problems(vm.name, host, wanted, hd))
        iommu_coming = bool(hd and hd.kernel and hd.kernel.iommu)
        if not host.device_passthrough and not iommu_coming:
            blockers.append(f"host {host_name} has device passthrough (IOMMU) disabled; set "
                            "kernel.iommu: true on a profile selecting it")
        if blockers:
            return
        current = {d.name for d in vm.host_devices if not d.placeholder}
        if vm.pinned_hosts != (host_name,):
            before = ",".join(vm.pinned_hosts) or None
            note = (" (the engine drops the VM's host devices when the pinned host changes)"
                    if vm.host_devices else "")
            parts.append(f"pin to host {host_name} (was {before or 'not pinned'})")
            hostdev.append(PinVm(target=key, before=before, after=host_name,
                                 disruption=Disruption.NONE, reason=reason,
                                 description=f"pin VM {vm.name} to host {host_name}{note}",
                                 verify=(Verification(key, "pinned_hosts", "eq", host_name),),
                                 host=host_name))
            current = set()
        want = list(dict.fromkeys(spec.passthrough.devices))
        for name in sorted(current - set(want)):
            parts.append(f"detach {name}")
            hostdev.append(DetachHostDevice(
                target=key, before=name, after=None, disruption=Disruption.VM_RESTART,
                reason=Reason.PRUNE, description=f"detach host device {name} (not in the spec)",
                verify=(Verification(key, "host_devices", "not-contains", name),),
                host=host_name, device=name))
        for name in want:
            if name in current:
                continue
            parts.append(f"attach {name}")
            hostdev.append(AttachHostDevice(
                target=key, before=None, after=name, disruption=Disruption.VM_RESTART,
                reason=reason, description=f"attach host device {name} from host {host_name}",
                verify=(Verification(key, "host_devices", "contains", name),),
                host=host_name, device=name))

    def _plan_vgpu(self, vm: Vm, spec: VmSpec, reason: Reason, blockers: list[str],
                   next_start: list[Action], parts: list[str]) -> list[AddMediatedDevice]:
        assert spec.vgpu is not None
        key = f"vm:{vm.name}"
        want = spec.vgpu
        offered_here = self._cluster_types(vm.cluster)
        if want.type not in offered_here:
            offered = sorted(offered_here)
            blockers.append(
                f"vGPU type {want.type} is not offered by any GPU in cluster {vm.cluster}"
                + checks.did_you_mean(want.type, offered)
                + (f"; offered: {', '.join(offered[:12])}" if offered else "; no vGPU-capable GPU"))
            return []
        nodisplay = want.secondary_display == "none"
        mine = sorted((m for m in vm.mediated_devices if m.mdev_type == want.type),
                      key=lambda m: m.id)
        others = sorted((m for m in vm.mediated_devices if m.mdev_type != want.type),
                        key=lambda m: m.id)
        keep, extra = mine[:want.instances], mine[want.instances:]
        for m in others + extra:
            why = "type changed" if m.mdev_type != want.type else "more instances than wanted"
            parts.append(f"remove vGPU {m.mdev_type} {m.id} ({why})")
            next_start.append(RemoveMediatedDevice(
                target=key, before=m.mdev_type, after=None, disruption=Disruption.VM_RESTART,
                reason=reason, description=f"remove mediated device {m.id} ({m.mdev_type}, {why})",
                verify=(Verification(key, "mediated_devices", "not-contains", m.id),),
                device_id=m.id, mdev_type=m.mdev_type))
        for m in keep:
            if m.nodisplay != nodisplay or m.driver_params != want.driver_params:
                parts.append(f"update vGPU {m.id} display/driver params")
                next_start.append(UpdateMediatedDevice(
                    target=key, before=_mdev_params(m.mdev_type, m.nodisplay, m.driver_params),
                    after=_mdev_params(want.type, nodisplay, want.driver_params),
                    disruption=Disruption.VM_RESTART, reason=reason,
                    description=f"update mediated device {m.id} (all spec params)",
                    verify=(Verification(key, f"mediated_devices[{m.id}].nodisplay", "eq",
                                         nodisplay),),
                    device_id=m.id, mdev_type=want.type, nodisplay=nodisplay,
                    driver_params=want.driver_params))
        adds: list[AddMediatedDevice] = []
        for i in range(len(keep) + 1, want.instances + 1):
            adds.append(AddMediatedDevice(
                target=key, before=None, after=_mdev_params(want.type, nodisplay,
                                                            want.driver_params),
                disruption=Disruption.VM_RESTART, reason=reason,
                description=f"add vGPU {want.type} (instance {i} of {want.instances})",
                verify=(Verification(key, f"mediated_devices[mdev_type={want.type}]", "count",
                                     want.instances),),
                mdev_type=want.type, nodisplay=nodisplay, driver_params=want.driver_params,
                instance=i))
        if adds:
            parts.append(f"add {len(adds)} x vGPU {want.type}")
        next_start.extend(adds)
        protocols = {g.protocol for g in vm.graphics}
        if want.secondary_display == "vnc" and "spice" in protocols and "vnc" not in protocols:
            parts.append("add a VNC console (SPICE-only VM with a vGPU)")
            next_start.append(SetConsoleVnc(
                target=key, before=",".join(sorted(protocols)), after="spice,vnc",
                disruption=Disruption.VM_RESTART, reason=reason,
                description="add a VNC graphics console (SPICE is kept)",
                verify=(Verification(key, "graphics", "contains", "vnc"),)))
        return adds

    # ---- unmanaged --------------------------------------------------------------------------------

    def report_unmanaged(self) -> None:
        for host_name in sorted(self.hosts):
            host = self.hosts[host_name]
            for dev in host.devices:
                if not dev.vm or not (dev.vendor_id == "10de" or dev.mdev_types):
                    continue
                spec = self.desired_vms.get(dev.vm)
                if spec is not None and spec.passthrough is not None \
                        and spec.passthrough.host == host_name:
                    continue
                self.drift.append(DriftItem(
                    f"host:{host_name}", "unmanaged",
                    f"GPU device {dev.name} ({dev.product_name or dev.pci_id or 'unknown'}) is "
                    f"used by VM {dev.vm}, which no spec mentions for passthrough", None))
        for name in sorted(self.vms):
            vm = self.vms[name]
            if vm.mediated_devices and name not in self.desired_vms:
                types = Counter(m.mdev_type for m in vm.mediated_devices)
                self.drift.append(DriftItem(
                    f"vm:{name}", "unmanaged", "vGPUs " + ", ".join(
                        f"{n} x {t}" for t, n in sorted(types.items())) +
                    " in use; no spec mentions this VM", None))

    # ---- whole plan -------------------------------------------------------------------------------

    def run(self) -> Plan:
        self.plan_hosts()
        waves, host_actions = self.schedule_cycles()
        self.plan_vms()
        self.report_unmanaged()
        actions = tuple(host_actions + self.vm_actions)
        snapshots: dict[str, str] = {}
        for key in sorted(self.depends):
            kind, name = key.split(":", 1)
            if kind == "host":
                snapshots[key] = host_snapshot(self.hosts[name], self.probes.get(name))
            else:
                snapshots[key] = vm_snapshot(self.vms[name])
        drift = tuple(sorted(self.drift, key=_drift_order))
        before = Counter(m.mdev_type for vm in self.observed.vms for m in vm.mediated_devices)
        types = sorted(set(before) | set(self.seat_delta))
        seats = tuple(SeatCount(t, before[t], before[t] + self.seat_delta[t]) for t in types
                      if self.seat_delta[t] or t in before)
        status_count = Counter(d.status for d in drift)
        summary = Summary(
            hosts_to_reboot=tuple(sorted({a.object_name for a in actions
                                          if isinstance(a, HostCycle)})),
            vms_to_restart=tuple(sorted({a.object_name for a in actions
                                         if isinstance(a, StopVm)})),
            changes=len(actions), blockers=status_count["blocked"],
            pending=status_count["pending"], drift=status_count["drift"],
            unmanaged=status_count["unmanaged"], seats=seats)
        return Plan(sources=tuple(self.desired.sources), actions=actions, waves=waves,
                    drift=drift, notes=tuple(sorted(set(self.notes),
                                                    key=lambda n: (n.key, n.message))),
                    fingerprints={k: fingerprint(v) for k, v in snapshots.items()},
                    desired_fingerprints=dict(sorted(self.desired_fps.items())),
                    snapshots=snapshots, summary=summary)


_STATUS_ORDER = {"blocked": 0, "pending": 1, "drift": 2, "unmanaged": 3}


def _drift_order(d: DriftItem) -> tuple[int, str, str]:
    return (_STATUS_ORDER[d.status], d.key, d.message)


def _mdev_params(mdev_type: str, nodisplay: bool, driver_params: str | None) -> str:
    """Human form of the full spec params of one mediated device."""
    text = f"{mdev_type} nodisplay={'true' if nodisplay else 'false'}"
    return text + (f" driverParams={driver_params}" if driver_params else "")


def plan(desired: DesiredState, observed: Observed, applied: Mapping[str, str] | None = None
         ) -> Plan:
    """Compute the ordered, disruption-aware plan that converges `observed` to `desired`.

    `applied` maps "host:NAME" / "vm:NAME" to the desired-settings fingerprint last applied
    successfully (`Plan.desired_fingerprints` of that run); it tells drift from pending changes.
    """
    return _Planner(desired, observed, applied or {}).run()
