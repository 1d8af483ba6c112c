"""The host phase: each managed host's settings (kernel command line, modprobe file, vGPU
placement), its checks, whether it needs and gets a host cycle, and the waves the cycles roll in.

Runs first: the VM phase needs to know which VMs a host cycle stops.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from reconciler.model.facts import Host
from reconciler.model.ownership import owned_kernel_args
from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import Action
from reconciler.plan.expand import HostDesired, expand_host
from reconciler.plan.hosts.changes import NO_CHANGES, HostChanges, combine
from reconciler.plan.hosts.cmdline import cmdline_changes
from reconciler.plan.hosts.cycle import cycle_state_problem, decide_cycle
from reconciler.plan.hosts.modprobe import modprobe_changes, modprobe_removal
from reconciler.plan.hosts.schedule import HostWork, schedule_cycles
from reconciler.plan.hosts.vgpu import placement_change, vgpu_readiness
from reconciler.plan.inputs import Inputs
from reconciler.plan.result import DriftItem, Note, Wave
from reconciler.spec.model import KernelSpec


@dataclass(frozen=True)
class HostPlan:
    """One managed host's outcome, before its cycle is scheduled."""

    key: str
    desired: HostDesired
    desired_fingerprint: str
    drift: tuple[DriftItem, ...]
    notes: tuple[Note, ...]
    work: HostWork | None                  # None: nothing to change (or blocked)


@dataclass(frozen=True)
class HostPhase:
    actions: tuple[Action, ...]            # in the order they run
    waves: tuple[Wave, ...]
    stopped_for_cycle: Mapping[str, str]   # VM -> the host it is stopped for
    host_desired: Mapping[str, HostDesired]   # every managed host, blocked or not
    drift: tuple[DriftItem, ...]
    notes: tuple[Note, ...]
    depends: frozenset[str]
    desired_fingerprints: Mapping[str, str]


def plan_hosts(inputs: Inputs, no_restart: Mapping[str, str] | None = None) -> HostPhase:
    """`no_restart`: VM -> why it could not start again after a host cycle that stops it (the VM
    phase finds these); the hosts they run on keep them running and are not cycled."""
    profiles = inputs.desired.host_profiles
    vgpu_clusters = {inputs.vms[v.name].cluster for v in inputs.desired.vms
                     if v.vgpu is not None and v.name in inputs.vms}
    plans: list[HostPlan] = []
    for name in sorted(inputs.hosts):
        host = inputs.hosts[name]
        desired = expand_host(host, profiles) if profiles else None
        if desired is not None:
            plans.append(plan_host(inputs, host, desired, host.cluster in vgpu_clusters,
                                   no_restart))
    schedule = schedule_cycles(inputs, [p.work for p in plans if p.work is not None])
    return HostPhase(
        actions=schedule.actions, waves=schedule.waves,
        stopped_for_cycle=schedule.stopped_for_cycle,
        host_desired={p.desired.host: p.desired for p in plans},
        drift=tuple(d for p in plans for d in p.drift) + schedule.blocked,
        notes=tuple(n for p in plans for n in p.notes),
        depends=frozenset(p.key for p in plans if p.work is not None) | schedule.depends,
        desired_fingerprints={p.key: p.desired_fingerprint for p in plans})


def plan_host(inputs: Inputs, host: Host, desired: HostDesired,
              vgpu_in_cluster: bool, no_restart: Mapping[str, str] | None = None) -> HostPlan:
    key = f"host:{host.name}"
    classified = inputs.classify(key, desired)
    reason = classified.reason
    probe = inputs.probes.get(host.name)
    changes = combine(
        HostChanges(blockers=desired.conflicts) if desired.conflicts else NO_CHANGES,
        # Without a kernel block only the args we wrote earlier (the host's record) can change.
        cmdline_changes(host, desired.kernel or KernelSpec(), inputs.clusters.get(host.cluster),
                        probe, reason)
        if desired.kernel is not None or owned_kernel_args(host.comment) else NO_CHANGES,
        modprobe_changes(key, desired.modprobe, probe, reason)
        if desired.modprobe is not None else modprobe_removal(key, probe, reason),
        placement_change(host, desired, reason),
        vgpu_readiness(host, desired, probe, vgpu_in_cluster))
    notes = tuple(Note(key, n) for n in changes.notes)
    blockers = changes.blockers + cycle_state_problem(host, desired, changes)
    if blockers:
        # A blocked host changes nothing: its other changes wait for the blocker to go.
        blocked = tuple(DriftItem(key, DriftStatus.BLOCKED, m, desired.location)
                        for m in blockers)
        return HostPlan(key, desired, classified.fingerprint, blocked, notes, None)
    decision = decide_cycle(inputs, host, desired, changes, reason, no_restart)
    differences = changes.differences + decision.differences
    drift = ((DriftItem(key, classified.status, "; ".join(differences), desired.location),)
             if differences else ())
    work = (HostWork(host, desired, changes.actions, decision.cycle, decision.stop_vms)
            if changes.actions or decision.cycle else None)
    return HostPlan(key, desired, classified.fingerprint, drift, notes, work)
