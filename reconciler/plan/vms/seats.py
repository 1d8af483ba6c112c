"""vGPU seats as the engine counts them, through one planning run.

The engine creates a VM's mdevs when the VM starts, on the one host its scheduler picks, and frees
them when it stops: `available_instances` counts running VMs only. So a seat is checked when a plan
*starts* a VM (stopped and started under `restart: allowed`, or after its host's cycle), never when
it only configures vGPUs on a VM that stays down; those are reported as a warning per type and
cluster when they would not all fit if every such VM started.

The ledger is the one thing the VM phase updates as it goes, on purpose: VMs are planned in the
order their actions run (those a host cycle stopped first, then name order, a VM giving a host
device up before the VM taking it, handoff.py), and a seat one VM's start takes is not there for
the next. The VMs stopped for host cycles are down before any of those actions: their seats are
free from the start, as the engine's scheduler sees them.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from reconciler.model.facts import Vm
from reconciler.plan.capacity import Pool, build_pool, fits_when_idle, idle_capacity
from reconciler.plan.inputs import Inputs
from reconciler.plan.result import PlanWarning

_SHOWN = 8


class SeatLedger:
    def __init__(self, inputs: Inputs, cycled: Iterable[str] = (),
                 stopped: Iterable[str] = ()) -> None:
        """`cycled`: the hosts this plan cycles; `stopped`: the VMs stopped for those cycles,
        which run before every VM's own changes, so their seats are free from the start."""
        self._inputs = inputs
        self._pools: dict[str, Pool] = {}
        # The scheduler considers Up hosts; a host this plan cycles is up again after its cycle.
        self._up = {h.name for h in inputs.observed.hosts if h.status == "up"} | set(cycled)
        self.running_after: Counter[str] = Counter(
            m.mdev_type for vm in inputs.observed.vms if vm.status != "down"
            for m in vm.mediated_devices)
        self.started: set[str] = set()
        self._stopped: set[str] = set()
        for name in sorted(stopped):
            vm = inputs.vms[name]
            before = self._held(vm)
            if before and vm.host:
                self._pool(vm.cluster).give_back(vm.host, before)
            self.running_after.subtract(before)
            self._stopped.add(name)

    def _held(self, vm: Vm) -> Counter[str]:
        """The vGPUs whose seats the VM holds at this point of the plan: none once it is down."""
        if vm.status == "down" or vm.name in self._stopped:
            return Counter()
        return Counter(m.mdev_type for m in vm.mediated_devices)

    def _pool(self, cluster: str) -> Pool:
        pool = self._pools.get(cluster)
        if pool is None:
            hosts = self._inputs.hosts_by_cluster.get(cluster, ())
            pool = self._pools[cluster] = build_pool(
                ((h.name, h.devices) for h in hosts),
                {h.name: Counter(m.mdev_type for vm in self._inputs.vms_on_host.get(h.name, ())
                                 if vm.status != "down" for m in vm.mediated_devices)
                 for h in hosts})
        return pool

    def restart(self, vm: Vm, after: Mapping[str, int], pinned: tuple[str, ...] = ()
                ) -> str | None:
        """The plan (stops `vm`, when it runs, and) starts it with the vGPUs `after`: its seats
        come back on its host at the stop, and `after` must fit on one host at the start (one of
        `pinned` when the VM is pinned: the scheduler considers only those). None when it fits;
        otherwise why not, and the ledger is as before."""
        pool = self._pool(vm.cluster)
        before = self._held(vm)
        if before and vm.host:
            pool.give_back(vm.host, before)
        # A type no GPU of the cluster offers cannot be counted here (the VM spec's own check
        # reports an unknown type): only offered types are checked.
        wanted = {t: n for t, n in after.items() if n > 0 and pool.offers(t)}
        if wanted:
            hosts = [h for h in pool.hosts() if h in self._up and (not pinned or h in pinned)]
            if pool.take_on_one_host(wanted, hosts) is None:
                # as it would be at its start
                why = self.never_fits(vm, wanted, pinned) or self._no_room(vm, wanted, pool,
                                                                           hosts, pinned)
                if before and vm.host:
                    pool.take_on_one_host(before, [vm.host])      # it keeps running as it is
                return why
        self.running_after.subtract(before)
        self.running_after.update({t: n for t, n in after.items() if n > 0})
        self.started.add(vm.name)
        return None

    def never_fits(self, vm: Vm, after: Mapping[str, int], pinned: tuple[str, ...] = ()
                   ) -> str | None:
        """Why the VM could never start with the vGPUs `after` (no host could hold them all even
        with every GPU idle), or None."""
        wanted = {t: n for t, n in after.items() if n > 0}
        if not wanted:
            return None
        hosts = [h for h in self._inputs.hosts_by_cluster.get(vm.cluster, ())
                 if not pinned or h.name in pinned]
        if any(fits_when_idle(h.devices, wanted) for h in hosts):
            return None
        need = ", ".join(f"{n} x {t}" for t, n in sorted(wanted.items()))
        most = ", ".join(f"{t}: {max((idle_capacity(h.devices, t) for h in hosts), default=0)}"
                         for t in sorted(wanted))
        return (f"VM {vm.name} wants {need}, over the capacity of {_where(vm, pinned)} even with "
                "every GPU idle (the engine starts all of a VM's vGPUs on the one host it starts "
                f"on; at most per host: {most}), so it could never start")

    def _no_room(self, vm: Vm, wanted: Mapping[str, int], pool: Pool, hosts: list[str],
                 pinned: tuple[str, ...]) -> str:
        need = ", ".join(f"{n} x {t}" for t, n in sorted(wanted.items()))
        free = "; ".join(f"{h}: " + ", ".join(f"{pool.free_on(h, t)} {t}" for t in sorted(wanted))
                         for h in hosts[:_SHOWN]) or "no host of the cluster is up"
        return (f"starting VM {vm.name} needs {need} on one host (the engine creates a VM's vGPUs "
                f"when it starts, all on the host it starts on), and no host of cluster "
                f"{vm.cluster}{_pinned_to(pinned)} has them free then ({free}); running VMs hold "
                "the seats: stop one, or start this VM elsewhere")

    def down_warnings(self, configured: Mapping[str, Counter[str]]) -> tuple[PlanWarning, ...]:
        """Per cluster and type: the vGPUs configured on VMs that are down after this plan, when
        they are more than the seats free after it (`configured`: VM name -> its vGPUs)."""
        by_type: dict[tuple[str, str], dict[str, int]] = {}
        for name, types in sorted(configured.items()):
            vm = self._inputs.vms[name]
            for mdev_type, count in sorted(types.items()):
                if count > 0:
                    by_type.setdefault((vm.cluster, mdev_type), {})[name] = count
        warnings: list[PlanWarning] = []
        for (cluster, mdev_type), holders in sorted(by_type.items()):
            pool = self._pool(cluster)
            free = pool.seats_left(mdev_type)
            total = sum(holders.values())
            if total <= free:
                continue
            names = list(holders)
            shown = ", ".join(f"{n} ({holders[n]})" for n in names[:_SHOWN]) + (
                ", ..." if len(names) > _SHOWN else "")
            hosts = ", ".join(f"{h}: {pool.free_on(h, mdev_type)}" for h in pool.hosts()
                              if pool.free_on(h, mdev_type))
            warnings.append(PlanWarning(f"cluster:{cluster}", (
                f"{total} x {mdev_type} configured on VM(s) that are down would exceed capacity by "
                f"{total - free} if all started: {free} seat(s) free after this plan"
                + (f" ({hosts})" if hosts else "") + f"; VMs: {shown}. The engine takes a seat "
                "only when a VM starts (the first to start get them); free seats, or give some "
                "of these VMs another type")))
        return tuple(warnings)


def _where(vm: Vm, pinned: tuple[str, ...]) -> str:
    """The hosts a VM may start on, for a message: a pinned VM starts only on its hosts."""
    if pinned:
        return f"host(s) {', '.join(pinned)} (the VM is pinned there)"
    return f"every host of cluster {vm.cluster}"


def _pinned_to(pinned: tuple[str, ...]) -> str:
    return f" that it is pinned to ({', '.join(pinned)})" if pinned else ""


__all__ = ["SeatLedger"]
