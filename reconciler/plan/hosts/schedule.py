"""Host cycles into rollout waves, and the host phase's actions in the order they run: settings of
hosts that need no reboot first, then wave by wave each host's stopped VMs, settings and cycle."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from reconciler.model.facts import Host, Vm
from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import Action, Disruption, HostCycle
from reconciler.plan.expand import HostDesired
from reconciler.plan.hosts.waves import CycleRequest, plan_waves
from reconciler.plan.inputs import Inputs
from reconciler.plan.power import stop_vm
from reconciler.plan.result import DriftItem, Wave


@dataclass(frozen=True)
class HostWork:
    """A managed host's planned changes: its settings, and its cycle with the VMs stopped for it."""

    host: Host
    desired: HostDesired
    config: tuple[Action, ...]
    cycle: HostCycle | None = None
    stop_vms: tuple[Vm, ...] = ()


@dataclass(frozen=True)
class Schedule:
    actions: tuple[Action, ...]
    waves: tuple[Wave, ...]
    stopped_for_cycle: Mapping[str, str]   # VM -> the host it is stopped for
    blocked: tuple[DriftItem, ...]          # hosts the budget does not let cycle
    depends: frozenset[str]                 # VMs on cycled hosts decided whether they may go down


def schedule_cycles(inputs: Inputs, works: Sequence[HostWork]) -> Schedule:
    by_host = {w.host.name: w for w in works}
    requests = [CycleRequest(w.host.name, w.host.cluster, w.host.status == "up",
                             w.desired.max_unavailable) for w in works if w.cycle is not None]
    waves = plan_waves(sorted(requests, key=lambda r: r.host), inputs.hosts_by_cluster)
    blocked: list[DriftItem] = []
    for host, why in sorted(waves.held.items()):
        # Held back: its settings are still made, only the cycle waits.
        work = by_host[host] = replace(by_host[host], cycle=None, stop_vms=())
        blocked.append(DriftItem(f"host:{host}", DriftStatus.BLOCKED, why, work.desired.location))
    ordered: list[Action] = [a for name in sorted(by_host) if by_host[name].cycle is None
                             for a in by_host[name].config]
    stopped: dict[str, str] = {}
    depends: set[str] = set()
    for number, hosts in enumerate(waves.waves, start=1):
        for name in hosts:
            work = by_host[name]
            depends.update(f"vm:{v.name}" for v in inputs.vms_on_host.get(name, ()))
            for vm in work.stop_vms:
                stopped[vm.name] = name
                ordered.append(stop_vm(vm, inputs.desired_vms[vm.name],
                                       f"so that host {name} can reboot", wave=number))
            ordered.extend(_in_cycle(a, number) for a in work.config)
            assert work.cycle is not None
            ordered.append(replace(work.cycle, wave=number))
    return Schedule(actions=tuple(ordered),
                    waves=tuple(Wave(n, hosts) for n, hosts in enumerate(waves.waves, start=1)),
                    stopped_for_cycle=stopped, blocked=tuple(blocked), depends=frozenset(depends))


def _in_cycle(action: Action, wave: int) -> Action:
    """A host setting run inside its host's cycle. The host files (our modprobe file, the
    initramfs) take effect with the cycle's reboot, so they show the cycle's disruption on every
    host of a wave, rather than `none` on a host where no blacklisted module is loaded and
    `host-reboot` on the next."""
    if action.cycle_order <= 1 and action.disruption < Disruption.HOST_REBOOT:
        return replace(action, wave=wave, disruption=Disruption.HOST_REBOOT)
    return replace(action, wave=wave)
