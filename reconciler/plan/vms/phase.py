"""The VM phase: each spec VM in name order (passthrough, vGPUs, console, capacity, the restart
policy), after the host phase, so that VMs stopped for a host cycle are known. Those VMs come
first (they start again before other VMs' starts take the seats they gave up), and a VM giving a
host device up to another VM is planned before it (handoff.py)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reconciler.model.facts import Vm
from reconciler.model.vocab import DriftStatus
from reconciler.plan import checks
from reconciler.plan.actions import (Action, AddMediatedDevice, PinVm, Reason,
                                     RemoveMediatedDevice, StartVm, UpdateMediatedDevice)
from reconciler.plan.hosts import HostPhase
from reconciler.plan.inputs import Inputs
from reconciler.plan.power import start_vm
from reconciler.plan.prune import released_by_prune
from reconciler.plan.result import DriftItem, Note, PlanWarning
from reconciler.plan.vms.changes import NO_CHANGES
from reconciler.plan.vms.gate import gate
from reconciler.plan.vms.handoff import (NO_TAKEOVER, Handoff, Takeover, find_handoffs, given_up,
                                         planning_order, takeover)
from reconciler.plan.vms.passthrough import passthrough_changes
from reconciler.plan.vms.seats import SeatLedger
from reconciler.plan.vms.vgpu import vgpu_changes
from reconciler.spec.model import VmSpec


@dataclass(frozen=True)
class VmPlan:
    """One spec VM's outcome."""

    key: str
    actions: tuple[Action, ...] = ()
    drift: tuple[DriftItem, ...] = ()
    notes: tuple[Note, ...] = ()
    depends: frozenset[str] = frozenset()
    desired_fingerprint: str | None = None     # None: the VM does not exist
    adds_seats_in: str | None = None           # the cluster where it adds vGPU seats
    warnings: tuple[PlanWarning, ...] = ()
    no_restart: str | None = None              # stopped for a host cycle, and why it could not
                                               # start again after it


@dataclass(frozen=True)
class VmPhase:
    actions: tuple[Action, ...]
    drift: tuple[DriftItem, ...]
    notes: tuple[Note, ...]
    depends: frozenset[str]
    desired_fingerprints: Mapping[str, str]
    warnings: tuple[PlanWarning, ...] = ()
    seats_after: Mapping[str, int] = field(default_factory=dict)   # running VMs' vGPUs after it
    # VMs a host cycle stops that could not start again after it, and why: the planner plans the
    # hosts again, holding those hosts.
    no_restart: Mapping[str, str] = field(default_factory=dict)


def plan_vms(inputs: Inputs, hosts: HostPhase) -> VmPhase:
    seats = SeatLedger(inputs, (h for w in hosts.waves for h in w.hosts), hosts.stopped_for_cycle)
    plans = _plan_in_order(inputs, hosts, seats)
    # The seats a plan's starts take were counted on every GPU of the cluster: its hosts decide
    # them.
    seat_clusters = {p.adds_seats_in for p in plans if p.adds_seats_in is not None}
    seat_hosts = {f"host:{h.name}" for c in seat_clusters
                  for h in inputs.hosts_by_cluster.get(c, ())}
    actions = tuple(a for p in plans for a in p.actions)
    return VmPhase(
        actions=actions, drift=tuple(d for p in plans for d in p.drift),
        notes=tuple(n for p in plans for n in p.notes),
        depends=frozenset().union(*(p.depends for p in plans)) | seat_hosts,
        desired_fingerprints={p.key: p.desired_fingerprint for p in plans
                              if p.desired_fingerprint is not None},
        warnings=tuple(w for p in plans for w in p.warnings)
        + seats.down_warnings(_down_after(inputs, actions, seats.started)),
        seats_after={t: n for t, n in seats.running_after.items() if n > 0},
        no_restart={p.key.split(":", 1)[1]: p.no_restart for p in plans
                    if p.no_restart is not None})


def _plan_in_order(inputs: Inputs, hosts: HostPhase, seats: SeatLedger) -> list[VmPlan]:
    """Each spec VM in name order, the VMs stopped for a host cycle first, except that a VM giving
    a host device up to another comes before it (handoff.py); the plan's VM actions follow this
    order."""
    handoffs = find_handoffs(inputs.desired_vms, inputs.hosts, inputs.vms)
    order = planning_order(sorted(inputs.desired_vms), handoffs, set(hosts.stopped_for_cycle))
    pruned: dict[str, dict[str, str]] = {}
    for (host, device), vm in released_by_prune(inputs).items():
        pruned.setdefault(host, {})[device] = vm
    by_taker: dict[str, list[Handoff]] = {}
    by_giver: dict[str, list[Handoff]] = {}
    for h in handoffs:
        by_taker.setdefault(h.taker, []).append(h)
        by_giver.setdefault(h.giver, []).append(h)
    given: frozenset[Handoff] = frozenset()
    plans: list[VmPlan] = []
    for name in order.names:
        spec = inputs.desired_vms[name]
        on_host = pruned.get(spec.passthrough.host, {}) if spec.passthrough else {}
        planned = plan_vm(inputs, spec, hosts, seats,
                          takeover(by_taker.get(name, ()), given, order.rings, on_host))
        given |= {h for h in by_giver.get(name, ()) if given_up(h, planned.actions)}
        plans.append(planned)
    return plans


def plan_vm(inputs: Inputs, spec: VmSpec, hosts: HostPhase, seats: SeatLedger,
            handed: Takeover = NO_TAKEOVER) -> VmPlan:
    vm = inputs.vms.get(spec.name)
    if vm is None:
        key = f"vm:{spec.name}"
        return VmPlan(key, drift=(DriftItem(
            key, DriftStatus.BLOCKED, f"VM {spec.name} does not exist in the engine"
            + checks.did_you_mean(spec.name, inputs.vms), _location(spec)),))
    planned = _plan_existing(inputs, vm, spec, hosts, seats, handed)
    if vm.name in hosts.stopped_for_cycle and not any(isinstance(a, StartVm)
                                                      for a in planned.actions):
        # Stopped so that its host could reboot: bring it back even if nothing else changes; it
        # takes back the seats it gave up (they are free again once it stopped). When it could
        # not start again, the host must keep it running: the planner plans the hosts again.
        after = vgpus_after(vm, planned.actions)
        pinned = (_start_hosts(vm, spec) if any(isinstance(a, PinVm) for a in planned.actions)
                  else vm.pinned_hosts)
        why = seats.restart(vm, after, pinned)
        if why:
            return replace(planned, no_restart=why)
        planned = replace(planned, actions=planned.actions + (
            start_vm(vm, spec, Reason.SPEC_CHANGE, "after its host's cycle"),))
    return planned


def _plan_existing(inputs: Inputs, vm: Vm, spec: VmSpec, hosts: HostPhase,
                   seats: SeatLedger, handed: Takeover) -> VmPlan:
    key = f"vm:{vm.name}"
    loc = _location(spec)
    classified = inputs.classify(key, spec)
    passthrough = vgpus = NO_CHANGES
    if spec.passthrough is not None:
        passthrough = passthrough_changes(inputs, vm, spec.passthrough, classified.reason,
                                          hosts.host_desired, handed)
    if spec.vgpu is not None:
        vgpus = vgpu_changes(inputs, vm, spec.vgpu, classified.reason,
                             spec.passthrough.host if spec.passthrough else None)
    unmanaged = _unmanaged_parts(key, vm, spec, loc)
    notes = tuple(Note(key, n) for n in passthrough.notes + vgpus.notes)
    warnings = tuple(PlanWarning(key, w, loc) for w in passthrough.warnings + vgpus.warnings)

    def outcome(drift: tuple[DriftItem, ...] = (), actions: tuple[Action, ...] = (),
                depends: frozenset[str] = frozenset(), adds_seats_in: str | None = None
                ) -> VmPlan:
        return VmPlan(key, actions, unmanaged + drift, notes, depends, classified.fingerprint,
                      adds_seats_in, warnings)

    blockers = passthrough.blockers + vgpus.blockers
    if spec.vgpu is not None and vm.legacy_mdev_property:
        # Before 4.5 the engine starts the VM with the property's vGPUs whatever its mediated
        # devices say; 4.5 converts the property on upgrade and on any VM update.
        blockers += (f"VM carries the pre-4.5 vGPU custom property mdev_type="
                     f"{vm.legacy_mdev_property}: remove it, or upgrade the engine to 4.5, "
                     "which converts it into mediated devices",)
    if blockers:
        return outcome(drift=tuple(DriftItem(key, DriftStatus.BLOCKED, m, loc) for m in blockers))
    if not (passthrough.actions or vgpus.actions):
        return outcome()
    pinned = _start_hosts(vm, spec)
    if any(isinstance(a, AddMediatedDevice) for a in vgpus.actions):
        never = seats.never_fits(vm, vgpus_after(vm, vgpus.actions), pinned)
        if never:
            return outcome(drift=(DriftItem(key, DriftStatus.BLOCKED, never, loc),))
    gated = gate(vm, spec, classified.reason, passthrough.actions, vgpus.actions,
                 vm.name in hosts.stopped_for_cycle)
    if any(isinstance(a, StartVm) for a in gated.actions):
        # Seats as the engine counts them: this start needs the VM's vGPUs at that moment.
        problem = seats.restart(vm, vgpus_after(vm, gated.actions), pinned)
        if problem:
            return outcome(drift=(DriftItem(key, DriftStatus.BLOCKED, problem, loc),))
    differences = passthrough.differences + vgpus.differences + gated.differences
    depends: frozenset[str] = frozenset()
    if gated.actions:
        depends = frozenset({key} | ({f"host:{spec.passthrough.host}"} if spec.passthrough
                                     else set()))
    return outcome(
        actions=gated.actions, depends=depends,
        drift=(DriftItem(key, classified.status, "; ".join(differences), loc),),
        adds_seats_in=vm.cluster if vm.name in seats.started and vgpus_after(vm, gated.actions)
        else None)


def _unmanaged_parts(key: str, vm: Vm, spec: VmSpec, loc: str | None) -> tuple[DriftItem, ...]:
    """GPU use of a spec VM that its spec leaves out (no passthrough, or no vGPU, section)."""
    items: list[DriftItem] = []
    if spec.passthrough is None and any(not d.placeholder for d in vm.host_devices):
        items.append(DriftItem(key, DriftStatus.UNMANAGED, "host devices " + ", ".join(
            sorted(d.name for d in vm.host_devices if not d.placeholder)) +
            " attached; the spec does not manage this VM's passthrough", loc))
    if spec.vgpu is None and vm.mediated_devices:
        items.append(DriftItem(key, DriftStatus.UNMANAGED, "vGPUs " + ", ".join(
            sorted(m.mdev_type for m in vm.mediated_devices)) +
            " attached; the spec does not manage this VM's vGPUs", loc))
    if spec.vgpu is None and vm.legacy_mdev_property:
        items.append(DriftItem(key, DriftStatus.UNMANAGED,
                               "vGPU as the pre-4.5 custom property mdev_type="
                               f"{vm.legacy_mdev_property}; the spec does not manage this VM's "
                               "vGPUs", loc))
    return tuple(items)


def _location(spec: VmSpec) -> str | None:
    return str(spec.location) if spec.location else None


def vgpus_after(vm: Vm, actions: tuple[Action, ...]) -> Counter[str]:
    """The VM's vGPUs (type -> instances) once `actions` ran: what its next start needs."""
    types = {m.id: m.mdev_type for m in vm.mediated_devices}
    added: Counter[str] = Counter()
    for a in actions:
        if isinstance(a, RemoveMediatedDevice):
            types.pop(a.device_id, None)
        elif isinstance(a, UpdateMediatedDevice) and a.device_id in types:
            types[a.device_id] = a.mdev_type
        elif isinstance(a, AddMediatedDevice):
            added[a.mdev_type] += 1
    return Counter(types.values()) + added


def _down_after(inputs: Inputs, actions: tuple[Action, ...],
                started: set[str]) -> dict[str, Counter[str]]:
    """The vGPUs of every VM that is down after the plan (it does not start it)."""
    by_vm: dict[str, list[Action]] = {}
    for a in actions:
        by_vm.setdefault(a.object_name, []).append(a)
    return {vm.name: vgpus_after(vm, tuple(by_vm.get(vm.name, ()))) for vm in inputs.observed.vms
            if vm.status == "down" and vm.name not in started
            and (vm.mediated_devices or vm.name in by_vm)}


def _start_hosts(vm: Vm, spec: VmSpec) -> tuple[str, ...]:
    """The hosts the engine's scheduler may start the VM on: the ones it is pinned to (the
    spec's passthrough host once the plan pins it), any Up host of its cluster otherwise."""
    if spec.passthrough is not None:
        return (spec.passthrough.host,)
    return vm.pinned_hosts
