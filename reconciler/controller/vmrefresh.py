"""A pass the device poll alone started re-reads only the VMs it saw change.

The device poll names the VMs whose devices changed. Re-reading the whole fleet for that costs a
full observation (seconds to tens of seconds at 10,000 VMs); re-reading those few VMs (one
narrowed request) and planning against the last full observation with them replaced costs
almost nothing, and shows the drift within the poll's interval. The other facts are those of the
last full pass: a pass for any other reason (spec, events, the host sweep, the resync) observes
everything again, and an apply always re-observes the whole fleet under its lock, so nothing is
ever changed on the strength of this partial view.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from reconciler.engine.retry import DEFAULT_TIMING, Timing, read
from reconciler.model.facts import Observed, Vm
from reconciler.observe.engine import VM_FOLLOW, vm_fact

# Past this many changed VMs a full observation is the simpler read.
MAX_REFRESH = 64


def refresh_vms(connection: Any, observed: Observed, names: Iterable[str], *,
                timing: Timing = DEFAULT_TIMING) -> Observed:
    """`observed` with the named VMs read again (a VM gone from the engine is dropped)."""
    wanted = sorted(set(names))
    search = " or ".join(f"name={n}" for n in wanted)
    service = connection.system_service().vms_service()
    raw = read(lambda: service.list(search=search, follow=VM_FOLLOW), "read changed VMs",
               timing=timing, url=getattr(connection, "url", None))
    clusters = {c.id: c for c in observed.clusters}
    hosts = {h.id: h.name for h in observed.hosts}
    fresh: dict[str, Vm] = {}
    for v in raw:
        if v.name in wanted:
            fresh[v.name] = vm_fact(v, clusters, hosts.get)
    vms = [fresh.pop(v.name, v) for v in observed.vms if v.name not in wanted or v.name in fresh]
    vms.extend(fresh.values())
    return replace(observed, vms=tuple(sorted(vms, key=lambda v: v.name)))


def refreshable(names: Iterable[str]) -> bool:
    items = list(names)
    return 0 < len(items) <= MAX_REFRESH and all(
        all(c.isalnum() or c in "_.-" for c in n) for n in items)


__all__ = ["MAX_REFRESH", "refresh_vms", "refreshable"]
