"""Rollout waves: at most maxUnavailable hosts of a cluster down at once, counting hosts already
not up. Clusters roll in parallel, so wave N holds the N-th batch of every cluster.

A host that is already down for maintenance and needs a cycle goes in the first wave without using
the budget a second time (it is unavailable either way). When hosts outside the rollout already use
up the budget, the remaining hosts cannot be cycled and are reported.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.model.facts import Host


@dataclass(frozen=True)
class CycleRequest:
    host: str
    cluster: str
    up: bool
    max_unavailable: int


@dataclass(frozen=True)
class WavePlan:
    waves: tuple[tuple[str, ...], ...]          # wave 1 first; host names sorted in a wave
    held: Mapping[str, str]                     # host -> why it cannot be cycled


def plan_waves(requests: Sequence[CycleRequest], hosts_by_cluster: Mapping[str, Sequence[Host]]
               ) -> WavePlan:
    by_cluster: dict[str, list[CycleRequest]] = {}
    for req in requests:
        by_cluster.setdefault(req.cluster, []).append(req)
    batches: dict[str, list[list[str]]] = {}
    held: dict[str, str] = {}
    for cluster, reqs in sorted(by_cluster.items()):
        cycling = {r.host for r in reqs}
        others_down = sorted(h.name for h in hosts_by_cluster.get(cluster, ())
                             if h.status != "up" and h.name not in cycling)
        budget = min(r.max_unavailable for r in reqs) - len(others_down)
        down = sorted(r.host for r in reqs if not r.up)
        up = sorted(r.host for r in reqs if r.up)
        out: list[list[str]] = []
        if down:
            out.append(down)
        if up and budget <= 0:
            why = (f"cluster {cluster}: maxUnavailable {budget + len(others_down)} is used up by "
                   f"hosts already not up ({', '.join(others_down)}); bring them back up first")
            held.update({h: why for h in up})
            up = []
        first_room = max(budget - len(down), 0) if out else budget
        if up and out and first_room:
            out[0].extend(up[:first_room])
            out[0].sort()
            up = up[first_room:]
        while up:
            out.append(up[:budget])
            up = up[budget:]
        batches[cluster] = out
    depth = max((len(b) for b in batches.values()), default=0)
    waves = tuple(tuple(sorted(h for b in batches.values() if i < len(b) for h in b[i]))
                  for i in range(depth))
    return WavePlan(waves=waves, held=held)
