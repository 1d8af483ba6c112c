"""VM phase: passthrough and vGPU devices, consoles, the restart policy gate, and unmanaged GPU
use. Runs after the host phase, so VMs stopped for a host cycle are known."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from reconciler.model.facts import HostDevice, Vm
from reconciler.plan import checks
from reconciler.plan.actions import (Action, AddMediatedDevice, AttachHostDevice,
                                     DetachHostDevice, Disruption, PinVm, Reason,
                                     RemoveMediatedDevice, SetConsoleVnc, UpdateMediatedDevice,
                                     Verification)
from reconciler.plan.power import stop_vm
from reconciler.plan.result import DriftItem, Note
from reconciler.plan.state import IdleVgpus, PlanState, is_down
from reconciler.spec.model import VmSpec

NEXT_START = "takes effect at next start"


class VmPlanning(PlanState):
    """Plans each spec VM in name order."""

    def plan_vms(self) -> None:
        self._plan_each_vm()
        self._note_idle_seats()

    def _plan_each_vm(self) -> None:
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
            self.seat_adds.setdefault((vm.cluster, spec.vgpu.type), vm.name)
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
        if is_down(vm) or stopped:
            return hostdev + next_start + start
        if spec.restart == "allowed":
            stop = stop_vm(vm, spec, "to apply device changes", reason=reason)
            return [stop] + hostdev + next_start + [self._start(vm, spec, reason,
                                                                "after device changes")]
        if spec.restart == "whenDown":
            if hostdev:
                parts.append("host-device changes wait for the VM to be down (restart: whenDown; "
                             "the engine refuses them while it runs)")
            return [replace(a, note=NEXT_START) for a in next_start]
        parts.append(f"VM is {vm.status} and restart is never: changes wait until it is down")
        return []

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
            sharing = [v for v in self._device_holders().get((host_name, name), ())
                       if v != vm.name]
            if sharing:
                # The engine lets several down VMs hold one device; only one of them can run.
                self.notes.append(Note(key, f"device {name} on host {host_name} is also attached "
                                            f"to VM(s) {', '.join(sharing)} (down); only one of "
                                            "them can run at a time"))
            # The engine attaches the device's whole IOMMU group; the reviewer sees what follows.
            siblings = _group_siblings(devices, devices[name], want)
            follow = "follows as a placeholder" if len(siblings) == 1 else \
                "follow as placeholders"
            with_siblings = (f" (IOMMU group {devices[name].iommu_group}: "
                             f"{', '.join(siblings)} {follow})" if siblings else "")
            parts.append(f"attach {name}{' with ' + ', '.join(siblings) if siblings else ''}")
            hostdev.append(AttachHostDevice(
                target=key, before=None, after=name, disruption=Disruption.VM_RESTART,
                reason=reason,
                description=f"attach host device {name} from host {host_name}{with_siblings}",
                verify=(Verification(key, "host_devices", "contains", name),),
                host=host_name, device=name))

    def _note_idle_seats(self) -> None:
        """Note where VMs that are down hold more vGPUs of a type this plan adds than the seats
        left after it: available_instances does not count a VM until it starts."""
        for (cluster, mdev_type), first in sorted(self.seat_adds.items()):
            holders = self.idle_vgpus().get((cluster, mdev_type))
            if holders is None:
                continue
            left = self._pool(cluster).seats_left(mdev_type)     # once per type and cluster
            if holders.total <= left:
                continue
            names = list(holders.by_vm)
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            self.notes.append(Note(f"vm:{first}", (
                f"{holders.total} {mdev_type} vGPU(s) are configured on VM(s) that are down "
                f"({shown}) and {left} seat(s) are left in cluster {cluster} after this plan: "
                "available_instances does not count a VM until it starts, so not all of them "
                "can run at once")))

    def idle_vgpus(self) -> dict[tuple[str, str], IdleVgpus]:
        """(cluster, type) -> the vGPUs configured on VMs that are down (built once per run, so
        the check stays linear in the fleet)."""
        if self.idle_mdevs is None:
            self.idle_mdevs = {}
            for other in sorted(self.observed.vms, key=lambda v: v.name):
                if not other.mediated_devices or not is_down(other):
                    continue
                for t, n in sorted(Counter(m.mdev_type for m in other.mediated_devices).items()):
                    entry = self.idle_mdevs.setdefault((other.cluster, t), IdleVgpus())
                    entry.by_vm[other.name] = n
                    entry.total += n
        return self.idle_mdevs

    def _device_holders(self) -> dict[tuple[str, str], list[str]]:
        """(host, device) -> VMs whose configuration holds it (built once per run)."""
        if self.device_holders is None:
            holders: dict[tuple[str, str], list[str]] = {}
            for other in sorted(self.observed.vms, key=lambda v: v.name):
                for d in other.host_devices:
                    if d.host:
                        holders.setdefault((d.host, d.name), []).append(other.name)
            self.device_holders = holders
        return self.device_holders

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
                # After instance i (numbered after the kept ones) exactly i of the type exist.
                verify=(Verification(key, f"mediated_devices[mdev_type={want.type}]", "count",
                                     i),),
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


def _mdev_params(mdev_type: str, nodisplay: bool, driver_params: str | None) -> str:
    """Human form of the full spec params of one mediated device."""
    text = f"{mdev_type} nodisplay={'true' if nodisplay else 'false'}"
    return text + (f" driverParams={driver_params}" if driver_params else "")


def _group_siblings(devices: Mapping[str, HostDevice], device: HostDevice,
                    named: Iterable[str]) -> list[str]:
    """The other members of `device`'s IOMMU group that the spec does not name."""
    if device.iommu_group is None:
        return []
    skip = set(named)
    return sorted(d.name for d in devices.values()
                  if d.iommu_group == device.iommu_group and d.name not in skip
                  and d.name != device.name)
