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

from reconciler.model.facts import Observed
from reconciler.plan.actions import HostCycle, StopVm
from reconciler.plan.fingerprint import fingerprint, host_snapshot, vm_snapshot
from reconciler.plan.hosts import plan_hosts
from reconciler.plan.prune import prune
from reconciler.plan.result import DriftItem, Plan, SeatCount, Summary
from reconciler.plan.unmanaged import report_unmanaged
from reconciler.plan.vm_planning import VmPlanning
from reconciler.spec.model import DesiredState


class _Planner(VmPlanning):
    """One run: hosts first (their cycles decide which VMs are stopped), then VMs, then the Plan."""

    def run(self) -> Plan:
        hosts = plan_hosts(self.inputs)
        waves, host_actions = hosts.waves, list(hosts.actions)
        self.stopped_for_cycle = hosts.stopped_for_cycle
        self.host_desired = hosts.host_desired
        self.drift.extend(hosts.drift)
        self.notes.extend(hosts.notes)
        self.depends |= hosts.depends
        self.desired_fps.update(hosts.desired_fingerprints)
        self.plan_vms()
        # opt-in (spec `prune`): unmanaged items -> removal actions
        pruned = prune(self.inputs, report_unmanaged(self.inputs))
        self.drift.extend(pruned.drift)
        self.depends |= pruned.depends
        self.seat_delta.update(pruned.seat_delta)
        actions = tuple(host_actions + self.vm_actions) + pruned.actions
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
