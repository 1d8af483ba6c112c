"""Rollout: the plan's actions grouped into units of work, and the availability budget per cluster.

A unit is what the executor carries out as one: the host settings that need no reboot, one host
cycle (the VMs stopped for it, its settings, the cycle itself) or the changes of one VM. Host
cycles roll wave by wave as the planner ordered them; before a cycle takes a host out of `up`,
`Budget` re-reads the cluster and refuses when `maxUnavailable` hosts are already not up (a
degraded or foreign host counts too), so the budget holds whatever happened since the plan.
"""
from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from reconciler.model.facts import Host
from reconciler.plan.actions import Action, HostCycle
from reconciler.plan.expand import expand_host
from reconciler.spec.model import DesiredState


@dataclass(frozen=True)
class Unit:
    """`kind`: host-config (host settings, no reboot), host-cycle or vm."""

    kind: str
    target: str                         # host:NAME / vm:NAME
    actions: tuple[tuple[int, Action], ...]   # (index in the plan, action)
    wave: int | None = None

    @property
    def name(self) -> str:
        return self.target.split(":", 1)[1]

    @property
    def cycle(self) -> tuple[int, HostCycle] | None:
        return next(((i, a) for i, a in self.actions if isinstance(a, HostCycle)), None)


def units_of(actions: Sequence[Action]) -> list[Unit]:
    """Group actions in plan order: host settings without a cycle, then each wave's host cycles
    (with the VM stops the planner put in that wave), then each VM's changes."""
    config: dict[str, list[tuple[int, Action]]] = {}
    cycles: dict[str, list[tuple[int, Action]]] = {}
    cycle_wave: dict[str, int] = {}
    vms: dict[str, list[tuple[int, Action]]] = {}
    pending_stops: list[tuple[int, Action]] = []
    for index, action in enumerate(actions):
        if action.host_level and action.wave is None:
            config.setdefault(action.target, []).append((index, action))
        elif action.host_level:
            cycles.setdefault(action.target, []).extend(pending_stops)
            pending_stops = []
            cycles[action.target].append((index, action))
            cycle_wave[action.target] = action.wave or 0
        elif action.wave is not None:
            # A VM stopped so that the next host of its wave can reboot.
            pending_stops.append((index, action))
        else:
            vms.setdefault(action.target, []).append((index, action))
    units = [Unit("host-config", t, tuple(a)) for t, a in config.items()]
    for target, items in sorted(cycles.items(), key=lambda kv: (cycle_wave[kv[0]],
                                                                 kv[1][0][0])):
        units.append(Unit("host-cycle", target, tuple(items), cycle_wave[target]))
    for stop in pending_stops:                      # a stop with no cycle after it: keep it
        vms.setdefault(stop[1].target, []).insert(0, stop)
    units.extend(Unit("vm", t, tuple(a)) for t, a in vms.items())
    return units


def max_unavailable_by_host(desired: DesiredState, hosts: Sequence[Host]) -> dict[str, int]:
    """Each managed host's maxUnavailable (the strictest of the profiles that select it)."""
    out: dict[str, int] = {}
    for host in hosts:
        hd = expand_host(host, desired.host_profiles) if desired.host_profiles else None
        if hd is not None:
            out[host.name] = hd.max_unavailable
    return out


@dataclass(frozen=True)
class BudgetVerdict:
    allowed: bool
    unavailable: tuple[str, ...]        # hosts of the cluster not up, other than this one
    limit: int
    message: str


class Budget:
    """maxUnavailable per cluster, checked against a fresh read of the cluster before each
    cycle, plus the hosts whose cycles this run has started and not finished (they may not show
    as down yet when cycles start side by side)."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits = dict(limits)

    def check(self, host: Host, cluster_hosts: Sequence[Host],
              in_flight: Collection[str] = ()) -> BudgetVerdict:
        limit = self.limits.get(host.name, 1)
        members = {h.name for h in cluster_hosts}
        others = tuple(sorted({h.name for h in cluster_hosts
                               if h.name != host.name and h.status != "up"}
                              | {n for n in in_flight if n in members and n != host.name}))
        if host.status != "up":
            # Already unavailable: cycling it takes nothing more from the budget.
            return BudgetVerdict(True, others, limit, f"host {host.name} is already "
                                                      f"{host.status}")
        if len(others) >= limit:
            return BudgetVerdict(False, others, limit,
                                 f"cluster {host.cluster}: maxUnavailable {limit} is used up by "
                                 f"hosts not up ({', '.join(others)}); host {host.name} is not "
                                 "taken down")
        return BudgetVerdict(True, others, limit,
                             f"cluster {host.cluster}: {len(others)} of {limit} unavailable")


class BudgetGate:
    """`Budget` plus the cycles this run has admitted and not finished.

    Checking a host against the budget and counting it in flight are one step under one lock:
    cycles of a wave start side by side, and two of them must not both see the last free slot.
    """

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()

    def admit(self, host: Host, cluster_hosts: Sequence[Host]) -> BudgetVerdict:
        """Check `host`; when allowed, it counts as unavailable until `release`."""
        with self._lock:
            verdict = self.budget.check(host, cluster_hosts, self._in_flight)
            if verdict.allowed:
                self._in_flight.add(host.name)
            return verdict

    def release(self, name: str) -> None:
        with self._lock:
            self._in_flight.discard(name)


__all__ = ["Budget", "BudgetGate", "BudgetVerdict", "Unit", "max_unavailable_by_host",
           "units_of"]
