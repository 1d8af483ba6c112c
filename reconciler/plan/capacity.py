"""vGPU capacity: instances per type against what the cluster's physical GPUs can still give.

NVIDIA mdev GPUs host one vGPU type at a time: once a type is in use on a GPU, every other type
reads `available_instances == 0` there. A GPU is *locked* to the type that has fewer available
instances than its maximum; a GPU where every type is at its maximum is *free* and can be claimed
by any one type. Seats are reserved VM by VM in name order, first on GPUs locked to the type, then
on free GPUs (claiming them), so a plan never counts one GPU for two types. The model in
`model_apply.py` reserves through the same function, so re-planning sees the same numbers.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from reconciler.model.facts import HostDevice, MdevType

_MAX_RE = re.compile(r"max_instance=(\d+)")


def max_instances(t: MdevType) -> int | None:
    if t.max_instances is not None:
        return t.max_instances
    m = _MAX_RE.search(t.description or "")
    return int(m.group(1)) if m else None


@dataclass
class Gpu:
    """A physical GPU (or mdev parent) as the capacity model sees it; mutable while planning."""

    host: str
    device: str
    available: dict[str, int]
    maximum: dict[str, int | None]
    locked: str | None = None
    full: bool = False

    @staticmethod
    def of(host: str, dev: HostDevice) -> Gpu:
        available: dict[str, int] = {}
        maximum: dict[str, int | None] = {}
        in_use: list[str] = []
        for t in dev.mdev_types:
            most = t.max_instances if t.max_instances is not None else max_instances(t)
            available[t.name] = t.available_instances
            maximum[t.name] = most
            if most is not None and t.available_instances < most:
                in_use.append(t.name)
        gpu = Gpu(host, dev.name, available, maximum)
        if len(in_use) == 1:
            gpu.locked = in_use[0]
        elif len(in_use) > 1 and all(v == 0 for v in gpu.available.values()):
            gpu.full = True
        return gpu

    def is_free(self) -> bool:
        return self.locked is None and not self.full


class Pool:
    """The GPUs of one cluster, indexed by the type they are locked to, plus the free ones.

    Seats are always taken in (host, device) order, so reservations only ever exhaust a prefix of
    each index: consumed entries are dropped from the front and a reservation costs what it takes.
    """

    def __init__(self, gpus: list[Gpu]) -> None:
        self.gpus = gpus
        self._locked: dict[str, deque[Gpu]] = {}
        self._free: deque[Gpu] = deque()
        self._types: set[str] = set()
        for g in gpus:
            self._types.update(g.available)
            if g.locked is not None:
                self._locked.setdefault(g.locked, deque()).append(g)
            elif g.is_free():
                self._free.append(g)

    def offers(self, mdev_type: str) -> bool:
        return mdev_type in self._types

    def type_names(self) -> list[str]:
        return sorted(self._types)

    def reserve(self, mdev_type: str, count: int) -> list[tuple[Gpu, int]] | None:
        """Take `count` seats of `mdev_type`; None (and nothing taken) when they do not fit."""
        if count <= 0:
            return []
        locked = self._locked.setdefault(mdev_type, deque())
        while locked and not locked[0].available.get(mdev_type, 0):
            locked.popleft()
        while self._free and not self._free[0].is_free():
            self._free.popleft()
        plan: list[tuple[Gpu, int]] = []
        # GPUs already running this type first, then idle ones (one type per GPU).
        need = _take(locked, mdev_type, count, plan)
        if need:
            need = _take((g for g in self._free if g.is_free()), mdev_type, need, plan)
        if need:
            return None
        for gpu, take in plan:
            if gpu.locked is None:
                gpu.locked = mdev_type
                for other in gpu.available:
                    if other != mdev_type:
                        gpu.available[other] = 0
                locked.append(gpu)
            gpu.available[mdev_type] -= take
        return plan

    def seats_left(self, mdev_type: str) -> int:
        return sum(g.available.get(mdev_type, 0) for g in self.gpus
                   if g.locked == mdev_type or g.is_free())


def build_pool(hosts: Iterable[tuple[str, Iterable[HostDevice]]]) -> Pool:
    """GPUs with mdev types on the given hosts, in host then device name order."""
    gpus = [Gpu.of(name, d) for name, devices in hosts for d in devices if d.mdev_types]
    gpus.sort(key=lambda g: (g.host, g.device))
    return Pool(gpus)


def _take(gpus: Iterable[Gpu], mdev_type: str, need: int, plan: list[tuple[Gpu, int]]) -> int:
    """Add (gpu, seats) to `plan` from `gpus` until `need` seats are found; what is still
    missing."""
    for gpu in gpus:
        if need == 0:
            break
        take = min(need, gpu.available.get(mdev_type, 0))
        if take:
            plan.append((gpu, take))
            need -= take
    return need
