"""Rollout waves: at most maxUnavailable hosts of a cluster down at once, counting hosts already
not up. Clusters roll in parallel, so wave N holds the N-th batch of every cluster. Where profiles
give a cluster's hosts different limits, each host is held to its own, as apply's `Budget` checks
it when the host's cycle starts.

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
        others_down = tuple(sorted(h.name for h in hosts_by_cluster.get(cluster, ())
                                   if h.status != "up" and h.name not in cycling))
        batches[cluster], held_here = _cluster_waves(cluster, reqs, others_down)
        held.update(held_here)
    depth = max((len(b) for b in batches.values()), default=0)
    waves = tuple(tuple(sorted(h for b in batches.values() if i < len(b) for h in b[i]))
                  for i in range(depth))
    return WavePlan(waves=waves, held=held)


def _cluster_waves(cluster: str, reqs: Sequence[CycleRequest], others_down: tuple[str, ...]
                   ) -> tuple[list[list[str]], dict[str, str]]:
    """One cluster's waves: the hosts already down first, then each host that is up, in name
    order, in the first wave where it fits.

    A host fits when every host of the wave that is up stays within its own maxUnavailable,
    counting the others of the wave and the hosts already not up: that is what apply's `Budget`
    checks as each cycle starts. Only the limits of hosts in the wave count, so whether a host
    may cycle does not depend on which other hosts happen to need a cycle too.
    """
    down = sorted((r for r in reqs if not r.up), key=lambda r: r.host)
    waves: list[list[CycleRequest]] = [down] if down else []
    held: dict[str, str] = {}
    for req in sorted((r for r in reqs if r.up), key=lambda r: r.host):
        if len(others_down) >= req.max_unavailable:
            held[req.host] = (f"cluster {cluster}: maxUnavailable {req.max_unavailable} is used "
                              f"up by hosts already not up ({', '.join(others_down)}); bring "
                              "them back up first")
            continue
        wave = next((w for w in waves if _fits([*w, req], len(others_down))), None)
        if wave is None:
            waves.append([req])
        else:
            wave.append(req)
    return [sorted(r.host for r in w) for w in waves], held


def _fits(wave: Sequence[CycleRequest], others_down: int) -> bool:
    return all(others_down + len(wave) <= r.max_unavailable for r in wave if r.up)
