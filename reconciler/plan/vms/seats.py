"""vGPU seats taken so far in one run, per cluster, and the note about VMs that are down holding
more vGPUs than the seats left.

The ledger is the one thing the VM phase updates as it goes, on purpose: seats are reserved VM by
VM in name order, and a seat one VM takes is not there for the next, as on the GPUs themselves.
"""
from __future__ import annotations

from reconciler.plan.capacity import Pool, build_pool
from reconciler.plan.inputs import Inputs
from reconciler.plan.result import Note


class SeatLedger:
    def __init__(self, inputs: Inputs) -> None:
        self._inputs = inputs
        self._pools: dict[str, Pool] = {}
        self._first_adder: dict[tuple[str, str], str] = {}   # (cluster, type) -> VM

    def _pool(self, cluster: str) -> Pool:
        pool = self._pools.get(cluster)
        if pool is None:
            pool = self._pools[cluster] = build_pool(
                (h.name, h.devices) for h in self._inputs.hosts_by_cluster.get(cluster, ()))
        return pool

    def reserve(self, vm: str, cluster: str, mdev_type: str, count: int) -> bool:
        """Take `count` seats for `vm`; False (and nothing taken) when they do not fit."""
        if self._pool(cluster).reserve(mdev_type, count) is None:
            return False
        self._first_adder.setdefault((cluster, mdev_type), vm)
        return True

    def seats_left(self, cluster: str, mdev_type: str) -> int:
        return self._pool(cluster).seats_left(mdev_type)

    def idle_seat_notes(self) -> tuple[Note, ...]:
        """Where VMs that are down hold more vGPUs of a type this plan adds than the seats left
        after it: available_instances does not count a VM until it starts."""
        notes: list[Note] = []
        for (cluster, mdev_type), first in sorted(self._first_adder.items()):
            holders = self._inputs.idle_vgpus.get((cluster, mdev_type))
            if holders is None:
                continue
            left = self.seats_left(cluster, mdev_type)
            if holders.total <= left:
                continue
            names = list(holders.by_vm)
            shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
            notes.append(Note(f"vm:{first}", (
                f"{holders.total} {mdev_type} vGPU(s) are configured on VM(s) that are down "
                f"({shown}) and {left} seat(s) are left in cluster {cluster} after this plan: "
                "available_instances does not count a VM until it starts, so not all of them "
                "can run at once")))
        return tuple(notes)
