"""Host devices that change hands between spec VMs within one plan.

A device that a running VM uses blocks every other VM: the engine would attach it to a second VM,
but that VM could not start while the first runs with it. When the user's own spec gives the
device up (it names other devices, or another passthrough host, whose pin drops its devices), the
device is free once that VM's changes have run. So the VM giving it up is planned first, and the
VMs taking it are planned after it and see the device as free only if its plan really lets it go
now (not when the giver is blocked, or its host-device changes wait for it to be down). The
executor runs VM units in plan order, so the giver's stop, detach and start come before the
taker's attach and start.

A ring of such VMs (A takes B's device while B takes A's) cannot be ordered: every VM's changes run
as one unit (stop, change, start), so the first one to start again would find its new device
still in use. The planner blocks them with a message saying so.
"""
from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from reconciler.model.facts import Host, Vm
from reconciler.plan.actions import Action, DetachHostDevice, PinVm
from reconciler.spec.model import VmSpec


@dataclass(frozen=True)
class Handoff:
    """`giver` uses `used` on `host` and its spec gives their IOMMU group up; `taker`'s spec asks
    for a device of that group (the engine attaches a whole group to one VM)."""

    giver: str
    taker: str
    host: str
    group: frozenset[str]
    used: tuple[str, ...]


@dataclass(frozen=True)
class HandoffOrder:
    """The spec VMs in the order to plan them, and the handoffs that cannot be ordered (rings)."""

    names: tuple[str, ...]
    rings: frozenset[Handoff]


@dataclass(frozen=True)
class Takeover:
    """What the handoffs mean for one taker's passthrough, given the VMs planned before it."""

    settled: frozenset[str] = frozenset()   # devices whose use by a giver is accounted for here
    givers: frozenset[str] = frozenset()    # VMs that give their devices up to it in this plan
    problems: tuple[str, ...] = ()          # handoffs that cannot happen in this plan


NO_TAKEOVER = Takeover()


def find_handoffs(specs: Mapping[str, VmSpec], hosts: Mapping[str, Host],
                  vms: Mapping[str, Vm]) -> tuple[Handoff, ...]:
    """Every device group a spec VM wants, and attaches in this plan, that another spec VM uses
    and gives up. A group whose named devices the taker already holds and keeps needs no
    handoff: nothing is attached (passthrough.py warns about its use by another VM)."""
    in_use = {name: [d for d in h.devices if d.vm] for name, h in hosts.items()}
    out: list[Handoff] = []
    for taker in sorted(specs.values(), key=lambda s: s.name):
        pt = taker.passthrough
        if pt is None or not any(d.vm != taker.name and d.vm in specs
                                 for d in in_use.get(pt.host, ())):
            continue
        host = hosts[pt.host]
        vm = vms.get(taker.name)
        kept = kept_devices(vm, host.name, pt.devices) if vm is not None else frozenset()
        groups = {_group(host, name) for name in pt.devices
                  if host.device(name) is not None
                  and not kept.issuperset(group_named(host, name, pt.devices))}
        for group in sorted(groups, key=sorted):
            users: dict[str, list[str]] = {}
            for d in in_use[pt.host]:
                if d.name in group and d.vm and d.vm != taker.name:
                    users.setdefault(d.vm, []).append(d.name)
            for giver, used in sorted(users.items()):
                if giver in specs and _gives_up(specs[giver], host.name, group):
                    out.append(Handoff(giver, taker.name, host.name, group,
                                       tuple(sorted(used))))
    return tuple(out)


def planning_order(names: Iterable[str], handoffs: Sequence[Handoff],
                   first: Set[str] = frozenset()) -> HandoffOrder:
    """Name order, the VMs in `first` before the others, except that a VM giving a device up
    comes before the VMs taking it.

    Handoffs inside a ring (a strongly connected part of the giver -> taker graph) are left out
    of the ordering and returned as `rings`; the rest is ordered smallest (not in `first`, name)
    first.
    """
    edges = {(h.giver, h.taker) for h in handoffs}
    ring_of = _strongly_connected(edges)
    rings = frozenset(h for h in handoffs
                      if ring_of.get(h.giver) is not None
                      and ring_of.get(h.giver) == ring_of.get(h.taker))
    ordered = {(h.giver, h.taker) for h in handoffs if h not in rings}
    after: dict[str, set[str]] = {}
    waiting: dict[str, int] = {}
    for giver, taker in ordered:
        if taker not in after.setdefault(giver, set()):
            after[giver].add(taker)
            waiting[taker] = waiting.get(taker, 0) + 1
    ready = [(n not in first, n) for n in names if not waiting.get(n)]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        out.append(name)
        for taker in sorted(after.get(name, ())):
            waiting[taker] -= 1
            if not waiting[taker]:
                heapq.heappush(ready, (taker not in first, taker))
    return HandoffOrder(tuple(out), rings)


def takeover(handoffs: Iterable[Handoff], given: frozenset[Handoff],
             rings: frozenset[Handoff], pruned: Mapping[str, str] | None = None) -> Takeover:
    """The taker's view of its handoffs: `given` holds those whose giver, planned before it,
    lets the devices go in this plan. `pruned`: device -> the down VM no spec names that pruning
    frees it from in this plan, on the taker's host (the order does not matter there: that VM
    does not run)."""
    mine = tuple(handoffs)
    pruned = pruned or {}
    if not mine and not pruned:
        return NO_TAKEOVER
    problems: list[str] = []
    for h in mine:
        if h in given:
            continue
        used = f"device {', '.join(h.used)} on host {h.host} is used by VM {h.giver}"
        if h in rings:
            problems.append(
                f"{used}, whose spec gives it up, but VM {h.giver} waits in turn, directly or "
                f"through other VMs, for a device VM {h.taker} uses: each VM's changes run as "
                "one unit (stop, change, start), so none of them could start again while the "
                "others still run; stop one of them and plan again")
        else:
            problems.append(
                f"{used}, whose spec gives it up, but not in this plan (see VM {h.giver}'s own "
                f"item: blocked, or waiting to be down); VM {h.taker} waits for it")
    return Takeover(settled=frozenset(d for h in mine for d in h.used) | frozenset(pruned),
                    givers=frozenset(h.giver for h in mine if h in given)
                    | frozenset(pruned.values()),
                    problems=tuple(problems))


def given_up(handoff: Handoff, giver_actions: Sequence[Action]) -> bool:
    """True when the giver's planned actions let the group go now: a new pin drops all its host
    devices; otherwise it detaches what it has of the group (its spec names none of it)."""
    return any(isinstance(a, PinVm)
               or (isinstance(a, DetachHostDevice) and a.host == handoff.host
                   and a.device in handoff.group)
               for a in giver_actions)


def kept_devices(vm: Vm, host: str, names: Sequence[str]) -> frozenset[str]:
    """The named devices the VM holds now and keeps: it stays pinned to `host` alone (a new pin
    drops every device, and all are attached again)."""
    if vm.pinned_hosts != (host,):
        return frozenset()
    held = {d.name for d in vm.host_devices if not d.placeholder and d.host in (None, host)}
    return frozenset(n for n in names if n in held)


def group_named(host: Host, name: str, names: Sequence[str]) -> frozenset[str]:
    """The devices of `names` in the IOMMU group of `name` on `host`."""
    return _group(host, name).intersection(names)


def _gives_up(giver: VmSpec, host: str, group: frozenset[str]) -> bool:
    """The giver's spec manages its passthrough and names nothing of the group on that host."""
    pt = giver.passthrough
    if pt is None:
        return False        # its host devices are not ours to change
    return pt.host != host or not group.intersection(pt.devices)


def _group(host: Host, name: str) -> frozenset[str]:
    device = next(d for d in host.devices if d.name == name)
    if device.iommu_group is None:
        return frozenset({name})
    return frozenset(d.name for d in host.devices if d.iommu_group == device.iommu_group)


def _strongly_connected(edges: set[tuple[str, str]]) -> dict[str, int]:
    """VM -> ring number, for the VMs on a cycle of the graph (Kosaraju, iteratively)."""
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in sorted(edges):
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    nodes = sorted(set(succ) | set(pred))
    finished: list[str] = []
    seen: set[str] = set()
    for start in nodes:
        if start in seen:
            continue
        seen.add(start)
        stack = [(start, iter(succ.get(start, ())))]
        while stack:
            node, rest = stack[-1]
            nxt = next((n for n in rest if n not in seen), None)
            if nxt is None:
                stack.pop()
                finished.append(node)
            else:
                seen.add(nxt)
                stack.append((nxt, iter(succ.get(nxt, ()))))
    component: dict[str, int] = {}
    for number, start in enumerate(reversed(finished)):
        if start in component:
            continue
        component[start] = number
        todo = [start]
        while todo:
            node = todo.pop()
            for prev in pred.get(node, ()):
                if prev not in component:
                    component[prev] = number
                    todo.append(prev)
    sizes: dict[int, int] = {}
    for number in component.values():
        sizes[number] = sizes.get(number, 0) + 1
    return {n: c for n, c in component.items() if sizes[c] > 1 or (n, n) in edges}
