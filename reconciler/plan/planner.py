"""plan(desired, observed, applied) -> Plan: pure, deterministic, no I/O and no clock.

The phases are functions that read the run's `Inputs` and return their results as values:

    plan_hosts(inputs)                      -> HostPhase   (hosts/: settings, cycles, waves)
    plan_vms(inputs, hosts)                 -> VmPhase     (vms/: needs the VMs cycles stop)
    prune(inputs, report_unmanaged(inputs)) -> PrunePhase  (opt-in removal of unmanaged use)

and `plan()` puts them together (the host and VM phases again, holding the hosts whose cycle
would stop a VM that could not start again after it). Order of the result: host actions of hosts
that need no reboot first, then host cycles wave by wave (within a host: set cmdline, write
modprobe file, dracut, set placement, cycle), then VM actions (pin, detach, attach, mediated
devices, console; wrapped in stop/start when the VM's `restart: allowed` lets us): the VMs the
cycles stopped first, then by VM name, a VM giving a host device up to another before it; then
pruning. Everything is looked up through dicts built once, so the planner is linear in the size
of the fleet.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from reconciler.model.facts import Observed
from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import Action, HostCycle, StopVm
from reconciler.plan.fingerprint import fingerprint, host_snapshot, vm_snapshot
from reconciler.plan.hosts import HostPhase, plan_hosts
from reconciler.plan.inputs import Inputs
from reconciler.plan.prune import PrunePhase, prune
from reconciler.plan.result import Plan, SeatCount, Summary
from reconciler.plan.unmanaged import report_unmanaged
from reconciler.plan.vms import VmPhase, plan_vms
from reconciler.plan.vms.phase import vgpus_after
from reconciler.spec.model import DesiredState


def plan(desired: DesiredState, observed: Observed, applied: Mapping[str, str] | None = None
         ) -> Plan:
    """Compute the ordered, disruption-aware plan that converges `observed` to `desired`.

    `applied` maps "host:NAME" / "vm:NAME" to the desired-settings fingerprint last applied
    successfully (`Plan.desired_fingerprints` of that run); it tells drift from pending changes.
    """
    inputs = Inputs(desired, observed, applied or {})
    hosts = plan_hosts(inputs)
    vms = plan_vms(inputs, hosts)
    no_restart: dict[str, str] = {}
    while vms.no_restart:
        # A VM a host cycle stops could not start again after it: that host keeps it running
        # (no cycle), and the hosts and VMs are planned again. Each round holds at least one
        # more host, so this ends.
        no_restart.update(vms.no_restart)
        hosts = plan_hosts(inputs, no_restart)
        vms = plan_vms(inputs, hosts)
    pruned = prune(inputs, report_unmanaged(inputs))
    return _assemble(inputs, hosts, vms, pruned)


def _assemble(inputs: Inputs, hosts: HostPhase, vms: VmPhase, pruned: PrunePhase) -> Plan:
    actions = hosts.actions + vms.actions + pruned.actions
    snapshots = _snapshots(inputs, hosts.depends | vms.depends | pruned.depends)
    drift = tuple(sorted(hosts.drift + vms.drift + pruned.drift,
                         key=lambda d: (d.status.rank, d.key, d.message)))
    notes = set(hosts.notes + vms.notes)
    warnings = tuple(sorted(set(vms.warnings), key=lambda w: (w.key, w.message)))
    status_count = Counter(d.status for d in drift)
    summary = Summary(
        hosts_to_reboot=tuple(sorted({a.object_name for a in actions
                                      if isinstance(a, HostCycle)})),
        vms_to_restart=tuple(sorted({a.object_name for a in actions if isinstance(a, StopVm)})),
        changes=len(actions), blockers=status_count[DriftStatus.BLOCKED],
        pending=status_count[DriftStatus.PENDING], drift=status_count[DriftStatus.DRIFT],
        unmanaged=status_count[DriftStatus.UNMANAGED], seats=_seats(inputs.observed, vms, actions),
        warnings=len(warnings))
    return Plan(sources=tuple(inputs.desired.sources), actions=actions, waves=hosts.waves,
                drift=drift, notes=tuple(sorted(notes, key=lambda n: (n.key, n.message))),
                warnings=warnings,
                fingerprints={k: fingerprint(v) for k, v in snapshots.items()},
                desired_fingerprints=dict(sorted({**hosts.desired_fingerprints,
                                                  **vms.desired_fingerprints}.items())),
                snapshots=snapshots, summary=summary)


def _snapshots(inputs: Inputs, depends: frozenset[str]) -> dict[str, str]:
    """The canonical JSON of every observed object the plan depends on, by key."""
    snapshots: dict[str, str] = {}
    for key in sorted(depends):
        kind, name = key.split(":", 1)
        if kind == "host":
            snapshots[key] = host_snapshot(inputs.hosts[name], inputs.probes.get(name))
        else:
            snapshots[key] = vm_snapshot(inputs.vms[name])
    return snapshots


def _seats(observed: Observed, vms: VmPhase, actions: tuple[Action, ...]
           ) -> tuple[SeatCount, ...]:
    """vGPU seats in use, as the engine counts them: instances of running VMs now, and once the
    plan ran (VMs it stops and starts, with their vGPUs then). Configuration the plan changes on
    a VM that stays down, or that takes effect at a running VM's next start, takes no seat: it is
    in `configured` (every VM's vGPUs after the plan)."""
    before = Counter(m.mdev_type for vm in observed.vms if vm.status != "down"
                     for m in vm.mediated_devices)
    after = Counter(vms.seats_after)
    by_vm: dict[str, list[Action]] = {}
    for a in actions:
        by_vm.setdefault(a.object_name, []).append(a)
    configured: Counter[str] = Counter()
    for vm in observed.vms:
        configured.update(vgpus_after(vm, tuple(by_vm.get(vm.name, ()))))
    return tuple(SeatCount(t, before[t], after[t], configured[t])
                 for t in sorted(set(before) | set(after) | set(+configured)))
