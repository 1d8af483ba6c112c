"""vGPU capacity: instances per type against what the cluster's physical GPUs can still give.

NVIDIA mdev GPUs host one vGPU type at a time: once a type is in use on a GPU, every other type
reads `available_instances == 0` there. The engine counts a seat only while a VM runs (vdsm creates
the mdev at the VM's start, on the one host the scheduler picked): `take_on_one_host` and
`give_back` follow a VM's start and stop. A GPU is *locked* to the type that has fewer available
instances than its maximum; a GPU where every type is at its maximum is *free* and can be claimed
by any one type. Seats are reserved VM by VM in the order the VMs are planned (and their actions
run), first on GPUs locked to the type, then on free GPUs (claiming them), so a plan never counts
one GPU for two types. The model in `model_apply.py` reserves through the same function, action
by action, so re-planning sees the same numbers.
"""
from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable, Mapping
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
        # While a GPU runs one type, the engine shows every other type at 0: the type it runs is
        # the one with some but not all seats left; with none left anywhere it is full.
        partly = [name for name in in_use if available[name] > 0]
        if len(partly) == 1:
            gpu.locked = partly[0]
        elif in_use and all(v == 0 for v in gpu.available.values()):
            gpu.full = True
        elif len(in_use) == 1:
            gpu.locked = in_use[0]
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

    # ---- seats as the engine counts them: taken at a VM's start, on the one host it starts on

    def hosts(self) -> list[str]:
        return sorted({g.host for g in self.gpus})

    def take_on_one_host(self, needs: Mapping[str, int], hosts: Iterable[str]) -> str | None:
        """Seats for every vGPU of a VM that starts: all on one host, as the engine's scheduler
        places a VM (the first of `hosts`, in the order given, where they all fit; on each, GPUs
        running the type first, then idle ones, one type per GPU). The host, or None (and
        nothing taken) when none has room."""
        wanted = {t: n for t, n in needs.items() if n > 0}
        if not wanted:
            return None
        for host in hosts:
            plan = _fit_on_host([g for g in self.gpus if g.host == host], wanted)
            if plan is not None:
                for gpu, mdev_type, take in plan:
                    _claim(gpu, mdev_type)
                    gpu.available[mdev_type] -= take
                return host
        return None

    def give_back(self, host: str, returned: Mapping[str, int]) -> None:
        """Seats a stopping VM frees on `host`: back to GPUs running the type (a GPU whose seats
        all come back is idle again, every type offered); a full GPU whose type the engine does
        not show is taken to run it."""
        for mdev_type, count in sorted(returned.items()):
            left = count
            on_host = [g for g in self.gpus if g.host == host and mdev_type in g.available]
            for gpu in [g for g in on_host if g.locked == mdev_type] + [g for g in on_host
                                                                         if g.full]:
                most = gpu.maximum.get(mdev_type)
                room = (most - gpu.available[mdev_type]) if most is not None else left
                give = min(left, room)
                if give <= 0:
                    continue
                if gpu.full:
                    gpu.full, gpu.locked = False, mdev_type
                gpu.available[mdev_type] += give
                left -= give
                if most is not None and gpu.available[mdev_type] >= most:
                    _release(gpu)
                if left == 0:
                    break

    def running_on(self, host: str, mdev_type: str) -> int:
        """Seats of `mdev_type` in use on `host` (GPUs running it; full GPUs may run it too)."""
        return sum((g.maximum.get(mdev_type) or 0) - g.available.get(mdev_type, 0)
                   for g in self.gpus if g.host == host and (g.locked == mdev_type or g.full))

    def free_on(self, host: str, mdev_type: str) -> int:
        return sum(g.available.get(mdev_type, 0) for g in self.gpus
                   if g.host == host and (g.locked == mdev_type or g.is_free()))


def build_pool(hosts: Iterable[tuple[str, Iterable[HostDevice]]],
               running: Mapping[str, Mapping[str, int]] | None = None) -> Pool:
    """GPUs with mdev types on the given hosts, in host then device name order.

    `running`: host -> the vGPUs (type -> instances) of the VMs running there, which tell what
    type a full GPU runs (`explain_full`)."""
    gpus = [Gpu.of(name, d) for name, devices in hosts for d in devices if d.mdev_types]
    gpus.sort(key=lambda g: (g.host, g.device))
    if running:
        explain_full(gpus, running)
    return Pool(gpus)


def explain_full(gpus: Iterable[Gpu], running: Mapping[str, Mapping[str, int]]) -> None:
    """A full GPU shows 0 seats for every type, so the engine does not say which type it runs,
    and a VM stopping there would give back seats of any type. The VMs running on its host say:
    a type whose vGPUs running there, beyond those on GPUs running that type, fill this GPU on
    their own may be its type; when exactly one type can, the GPU is taken to run it."""
    by_host: dict[str, list[Gpu]] = {}
    for gpu in gpus:
        by_host.setdefault(gpu.host, []).append(gpu)
    for host, on_host in by_host.items():
        left = Counter({t: n for t, n in running.get(host, {}).items() if n > 0})
        for gpu in on_host:
            if gpu.locked is not None:
                most = gpu.maximum.get(gpu.locked)
                if most is not None:
                    left[gpu.locked] -= most - gpu.available.get(gpu.locked, 0)
        for gpu in on_host:
            if not gpu.full:
                continue
            fits = [t for t, most in sorted(gpu.maximum.items())
                    if most is not None and left[t] >= most]
            if len(fits) == 1:
                gpu.full, gpu.locked = False, fits[0]
                left[fits[0]] -= gpu.maximum[fits[0]] or 0


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


def _fit_on_host(gpus: list[Gpu], wanted: Mapping[str, int]
                 ) -> list[tuple[Gpu, str, int]] | None:
    """(gpu, type, seats) that give every wanted seat on these GPUs, or None."""
    claimed: dict[str, str] = {}          # GPU device -> type claimed for it in this fit
    used: dict[str, int] = {}
    plan: list[tuple[Gpu, str, int]] = []
    for mdev_type, need in sorted(wanted.items()):
        running = [g for g in gpus if g.locked == mdev_type]
        idle = [g for g in gpus if g.is_free() and claimed.get(g.device, mdev_type) == mdev_type]
        for gpu in running + idle:
            if need == 0:
                break
            take = min(need, gpu.available.get(mdev_type, 0) - used.get(gpu.device, 0))
            if take > 0:
                plan.append((gpu, mdev_type, take))
                claimed[gpu.device] = mdev_type
                used[gpu.device] = used.get(gpu.device, 0) + take
                need -= take
        if need:
            return None
    return plan


def _claim(gpu: Gpu, mdev_type: str) -> None:
    """An idle GPU starts running `mdev_type`: every other type shows 0 seats."""
    if gpu.locked is None:
        gpu.locked = mdev_type
        for other in gpu.available:
            if other != mdev_type:
                gpu.available[other] = 0


def _release(gpu: Gpu) -> None:
    """A GPU whose every seat came back is idle: every type it offers has its seats again."""
    gpu.locked = None
    for name, most in gpu.maximum.items():
        if most is not None:
            gpu.available[name] = most


def idle_capacity(devices: Iterable[HostDevice], mdev_type: str) -> int:
    """Instances of `mdev_type` one host could run with every GPU idle."""
    return sum(max_instances(t) or 0 for d in devices for t in d.mdev_types if t.name == mdev_type)


def fits_when_idle(devices: Iterable[HostDevice], needs: Mapping[str, int]) -> bool:
    """Whether one host could run all of `needs` at once with every GPU idle (one type per
    GPU): if not, a VM asking for them can never start there, whatever else runs."""
    gpus = []
    for dev in devices:
        if not dev.mdev_types:
            continue
        most = {t.name: max_instances(t) for t in dev.mdev_types}
        gpus.append(Gpu("", dev.name, {n: m or 0 for n, m in most.items()}, most))
    return _fit_on_host(gpus, {t: n for t, n in needs.items() if n > 0}) is not None
