"""A pure model of what each action does to the facts, used to check that plans converge.

`apply_to_facts(plan, observed)` returns the facts as they would be observed after a successful
apply, including the effect of host reboots (the booted command line gains the managed arguments,
blacklisted modules are gone, the host comes back up). It follows the engine rules the planner
relies on: the pinned host changing drops a VM's host devices, an attached device brings its IOMMU
group along as placeholders, a detached one becomes a placeholder until the whole group is. A vGPU
seat added to a VM is reserved on a GPU through the same capacity rule the planner uses.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace

from reconciler.model.cmdline import arg_key, parse_token, tokenize
from reconciler.model.facts import (GraphicsConsole, Host, HostDevice, MdevType,
                                      MediatedDevice, Observed, ProbeFacts, Vm, VmHostDevice)
from reconciler.model.modprobe import effective_modprobe_paths, parse_modprobe_conf
from reconciler.model.ownership import with_owned_kernel_args
from reconciler.plan.actions import (Action, AddMediatedDevice, AttachHostDevice, DetachHostDevice,
                                     HostCycle, PinVm, RegenerateInitramfs, RemoveMediatedDevice,
                                     RemoveModprobeFile,
                                     SetConsoleVnc, SetKernelCmdline, SetVgpuPlacement, StartVm,
                                     StopVm, UpdateMediatedDevice, WriteModprobeFile)
from reconciler.plan.capacity import build_pool
from reconciler.plan.result import Plan

ACCUMULATING_KEYS = frozenset({"rdblacklist", "rd.driver.blacklist"})


def booted_after_cycle(booted: str | None, cycle: HostCycle) -> str:
    """The command line the host boots with after the cycle: managed args in, removed args out."""
    tokens = [t.raw for t in tokenize(booted)]
    for absent in cycle.expect_absent:
        key, _, value = absent.partition("=")
        tokens = [t for t in tokens if not (parse_token(t).key == arg_key(key) and
                                            (not value or parse_token(t).value == value))]
    for arg in cycle.expect_args:
        want = parse_token(arg)
        exclusive = "=" in arg and want.key not in ACCUMULATING_KEYS
        kept = [t for t in tokens if not (exclusive and parse_token(t).key == want.key
                                          and not parse_token(t).same_arg(want))]
        if not any(parse_token(t).same_arg(want) for t in kept):
            kept.append(arg)
        tokens = kept
    return " ".join(tokens)


class _Model:
    def __init__(self, observed: Observed) -> None:
        self.observed = observed
        self.hosts: dict[str, Host] = {h.name: h for h in observed.hosts}
        self.vms: dict[str, Vm] = {v.name: v for v in observed.vms}
        self.probes: dict[str, ProbeFacts] = {p.host: p for p in observed.probes}
        self.serial = 0

    def result(self) -> Observed:
        return replace(self.observed,
                       hosts=tuple(self.hosts[h.name] for h in self.observed.hosts),
                       vms=tuple(self.vms[v.name] for v in self.observed.vms),
                       probes=tuple(self.probes[p.host] for p in self.observed.probes))

    def _set_device(self, host: str, name: str, vm: str | None) -> None:
        h = self.hosts[host]
        self.hosts[host] = replace(h, devices=tuple(replace(d, vm=vm) if d.name == name else d
                                                    for d in h.devices))

    def _free_device(self, host: str, name: str, vm: str) -> None:
        """`vm` lets the device go; another VM it was attached to since keeps it."""
        dev = self.hosts[host].device(name)
        if dev is not None and dev.vm == vm:
            self._set_device(host, name, vm=None)

    def apply(self, action: Action) -> None:
        name = action.object_name
        if isinstance(action, SetKernelCmdline):
            host = self.hosts[name]
            comment = (host.comment if action.owned is None
                       else with_owned_kernel_args(host.comment, action.owned))
            self.hosts[name] = replace(host, custom_kernel_cmdline=action.cmdline,
                                       reinstallation_required=True, comment=comment)
        elif isinstance(action, WriteModprobeFile):
            # The probe reports the files modprobe reads; the new one may mask another.
            probe = self.probes[name]
            files = {f.path: f for f in probe.modprobe_files}
            files[action.path] = parse_modprobe_conf(action.path, action.content)
            self.probes[name] = replace(probe, modprobe_files=tuple(
                files[path] for path in effective_modprobe_paths(files)))
        elif isinstance(action, RemoveModprobeFile):
            probe = self.probes[name]
            self.probes[name] = replace(probe, modprobe_files=tuple(
                f for f in probe.modprobe_files if f.path != action.path))
        elif isinstance(action, RegenerateInitramfs):
            probe = self.probes[name]
            listed = sorted({m for f in probe.modprobe_files for m in f.blacklist})
            self.probes[name] = replace(probe, initramfs_blacklist=tuple(listed))
        elif isinstance(action, SetVgpuPlacement):
            self.hosts[name] = replace(self.hosts[name], vgpu_placement=action.placement)
        elif isinstance(action, HostCycle):
            self._cycle(name, action)
        elif isinstance(action, PinVm):
            self._pin(name, action.host)
        elif isinstance(action, AttachHostDevice):
            self._attach(name, action.host, action.device)
        elif isinstance(action, DetachHostDevice):
            self._detach(name, action.host, action.device)
        elif isinstance(action, AddMediatedDevice):
            self._add_mdev(name, action)
        elif isinstance(action, RemoveMediatedDevice):
            vm = self.vms[name]
            self.vms[name] = replace(vm, mediated_devices=tuple(
                m for m in vm.mediated_devices if m.id != action.device_id))
        elif isinstance(action, UpdateMediatedDevice):
            vm = self.vms[name]
            self.vms[name] = replace(vm, mediated_devices=tuple(
                replace(m, mdev_type=action.mdev_type, nodisplay=action.nodisplay,
                        driver_params=action.driver_params) if m.id == action.device_id else m
                for m in vm.mediated_devices))
        elif isinstance(action, SetConsoleVnc):
            vm = self.vms[name]
            graphics = [g for g in vm.graphics if not (action.remove_spice and g.protocol == "spice")]
            graphics.append(GraphicsConsole(id=f"{vm.id}-vnc", protocol="vnc"))
            self.vms[name] = replace(vm, graphics=tuple(graphics))
        elif isinstance(action, StopVm):
            vm = self.vms[name]
            self._seats(vm.host, vm.cluster, vm, give=True)
            self.vms[name] = replace(vm, status="down", host=None)
        elif isinstance(action, StartVm):
            vm = self.vms[name]
            host = self._seats(action.host, vm.cluster, vm, give=False)
            self.vms[name] = replace(vm, status="up", host=host or action.host)
        else:
            raise TypeError(f"no model for action kind {action.kind}")

    def _cycle(self, name: str, cycle: HostCycle) -> None:
        host = self.hosts[name]
        probe = self.probes.get(name)
        booted = (probe.proc_cmdline if probe is not None and probe.ok
                  and probe.proc_cmdline is not None else host.reported_kernel_cmdline)
        line = booted_after_cycle(booted, cycle)
        iommu = any(arg_key(a) in ("intel_iommu", "amd_iommu") for a in cycle.expect_args)
        self.hosts[name] = replace(host, reported_kernel_cmdline=line, status="up",
                                   reinstallation_required=False,
                                   device_passthrough=host.device_passthrough or iommu)
        if probe is not None and probe.ok:
            gone = set(cycle.expect_modules_absent)
            self.probes[name] = replace(
                probe, proc_cmdline=line,
                loaded_modules=tuple(m for m in probe.loaded_modules if m not in gone))

    def _release_devices(self, vm: Vm) -> None:
        for d in vm.host_devices:
            if d.host in self.hosts:
                self._free_device(d.host, d.name, vm.name)

    def _pin(self, name: str, host: str) -> None:
        vm = self.vms[name]
        if vm.pinned_hosts != (host,):
            self._release_devices(vm)
            vm = replace(vm, host_devices=())
        self.vms[name] = replace(vm, pinned_hosts=(host,), affinity="pinned")

    def _attach(self, name: str, host: str, device: str) -> None:
        vm = self.vms[name]
        h = self.hosts[host]
        dev = next(d for d in h.devices if d.name == device)
        group = [d for d in h.devices if d.iommu_group is not None
                 and d.iommu_group == dev.iommu_group] or [dev]
        current = {d.name: d for d in vm.host_devices}
        for d in group:
            if d.name == device:
                current[d.name] = VmHostDevice(name=d.name, host=host, placeholder=False)
            elif d.name not in current:
                current[d.name] = VmHostDevice(name=d.name, host=host, placeholder=True)
            self._set_device(host, d.name, vm=name)
        self.vms[name] = replace(vm, host_devices=tuple(current[k] for k in sorted(current)))

    def _detach(self, name: str, host: str, device: str) -> None:
        vm = self.vms[name]
        h = self.hosts[host]
        dev = next((d for d in h.devices if d.name == device), None)
        group = {d.name for d in h.devices if dev is not None and d.iommu_group is not None
                 and d.iommu_group == dev.iommu_group} or {device}
        devices = [replace(d, placeholder=True) if d.name == device else d
                   for d in vm.host_devices]
        members = [d for d in devices if d.name in group]
        if all(d.placeholder for d in members):
            devices = [d for d in devices if d.name not in group]
            for d in group:
                self._free_device(host, d, name)
        self.vms[name] = replace(vm, host_devices=tuple(devices))

    def _seats(self, host: str | None, cluster: str, vm: Vm, *, give: bool) -> str | None:
        """As the engine counts seats: a VM's vGPUs are created when it starts, all on the one
        host the scheduler picks (its pinned host for passthrough, else the first Up host of its
        cluster, by name, with room), and freed when it stops. A start with no room is what the
        engine refuses: the planner must never plan one."""
        needs = Counter(m.mdev_type for m in vm.mediated_devices)
        if not needs:
            return None
        hosts = sorted((h for h in self.hosts.values() if h.cluster == cluster),
                       key=lambda h: h.name)
        running: dict[str, Counter[str]] = {}
        for other in self.vms.values():
            if other.status != "down" and other.host:
                running.setdefault(other.host, Counter()).update(
                    m.mdev_type for m in other.mediated_devices)
        pool = build_pool(((h.name, h.devices) for h in hosts), running)
        if give:
            if host is None:
                return None
            # Seats the host does not show in use (vGPUs added while the VM ran, created only at
            # its next start) are not given back: give_back returns only what the GPUs can take.
            pool.give_back(host, needs)
            chosen: str | None = host
        else:
            # The scheduler considers the hosts the VM is pinned to, else the cluster's Up hosts.
            candidates = [h.name for h in hosts if h.status == "up"
                          and (not vm.pinned_hosts or h.name in vm.pinned_hosts)]
            # Types no GPU of the cluster offers cannot be counted (facts without that hardware).
            needs = Counter({t: n for t, n in needs.items() if pool.offers(t)})
            if not needs:
                return None
            chosen = pool.take_on_one_host(needs, candidates)
            if chosen is None:
                raise AssertionError(f"the engine would refuse to start {vm.name}: no host of "
                                     f"{cluster} has {dict(needs)} free")
        for gpu in pool.gpus:
            h = self.hosts[gpu.host]
            self.hosts[gpu.host] = replace(h, devices=tuple(
                _with_available(d, gpu.available) if d.name == gpu.device else d
                for d in h.devices))
        return chosen

    def _add_mdev(self, name: str, action: AddMediatedDevice) -> None:
        # Configuration only: the engine creates the mdev (and takes a seat) at the VM's start.
        vm = self.vms[name]
        self.serial += 1
        mdev = MediatedDevice(id=f"{vm.id}-mdev-{self.serial}", mdev_type=action.mdev_type,
                              nodisplay=action.nodisplay, driver_params=action.driver_params)
        self.vms[name] = replace(vm, mediated_devices=vm.mediated_devices + (mdev,))


def _with_available(dev: HostDevice, available: dict[str, int]) -> HostDevice:
    types: list[MdevType] = [replace(t, available_instances=available.get(t.name,
                                                                          t.available_instances))
                             for t in dev.mdev_types]
    return replace(dev, mdev_types=tuple(types))


def apply_to_facts(plan: Plan, observed: Observed) -> Observed:
    """The facts after every action of `plan` succeeded, in plan order."""
    model = _Model(observed)
    for action in plan.actions:
        model.apply(action)
    return model.result()
