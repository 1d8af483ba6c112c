"""Event-less drift: poll what the spec manages on the engine, between full passes.

Adding, removing or updating a VM's mediated devices (vGPUs) logs no audit event on the engine,
so the event poller cannot see the drift that matters most. This trigger reads the spec's VMs
with their mediated devices, host devices and graphics consoles (one `GET /vms?search=...&follow=`
request, narrowed to the spec's VM names) and compares each VM's devices with the previous poll.
Any difference enqueues "device-poll"; the pass that follows decides what it is (drift, pending,
resolved) against the applied fingerprints, as every pass does: the poll only decides *when*.

Comparing poll with poll (rather than with what the last pass saw) needs no hand-off from the
pass and cannot miss a change: every change happens between two polls. The first poll is taken
when the engine link opens, just before the first pass observes.

Its cost is measured and the interval adapts to it (`PollPacer`): the interval is at least the
configured minimum, at least `cpu / cpu_share` (the poll's own CPU time in this process, so at
rest the polls use at most `cpu_share` of one core; 8 % by default, under the 10 % promise with
room for the event poller, the lease and the status server, which together use well under 1 %),
and at least `wall / engine_share` (the engine serves us at most that share of the time). The
pacer reads the last poll's cost, so it regulates itself: a poll that got dearer stretches the
next interval. At 10,000 managed VMs a poll costs about a second of CPU and a few seconds of
wall time on a busy 2-core box, and runs every 13-20 s; on the demo fleet it stays at the minimum.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from reconciler import log
from reconciler.controller.triggers import WorkQueue, _EnginePoller
from reconciler.engine.retry import Backoff
from reconciler.observe.bulk_read import collector_paused, elements, fetch_xml
from reconciler.observe.engine import VM_FOLLOW, vm_search
from reconciler.spec.model import DesiredState

# The engine's own limit is far higher; past this many names one cluster search is cheaper.
MAX_NAMES = 64


@dataclass(frozen=True)
class PollCost:
    """What one poll cost: wall time, this thread's CPU time, VMs read."""

    wall: float
    cpu: float
    vms: int


@dataclass(frozen=True)
class PollPacer:
    """The interval after a poll of a given cost (see the module doc)."""

    minimum: float = 1.0
    cpu_share: float = 0.08
    engine_share: float = 0.25
    maximum: float = 60.0

    def interval(self, cost: PollCost) -> float:
        wanted = max(self.minimum, cost.cpu / self.cpu_share, cost.wall / self.engine_share)
        return min(max(wanted, self.minimum), max(self.maximum, self.minimum))


def poll_search(desired: DesiredState) -> str | None:
    """The search for the spec's VMs: their names, or (many names) the spec's clusters."""
    names = sorted({v.name for v in desired.vms})
    if names and len(names) <= MAX_NAMES and all(_safe(n) for n in names):
        return " or ".join(f"name={n}" for n in names)
    return vm_search(desired)


def _safe(name: str) -> bool:
    return all(c.isalnum() or c in "_.-" for c in name)


def _text(e: Element | None, tag: str) -> str:
    return (e.findtext(tag) or "") if e is not None else ""


def device_signature(vm: Element) -> str:
    """What the spec manages on one VM, as a short digest: mediated devices with their spec
    params, host devices (name, placeholder), console protocols. Ids are left out: they change
    when a device is replaced by an identical one, which is no drift."""
    parts: list[str] = []
    mdevs = vm.find("mediated_devices")
    for m in (mdevs if mdevs is not None else ()):
        params = m.find("spec_params")
        kv = sorted((_text(p, "name"), _text(p, "value")) for p in (params if params is not None
                                                                    else ()))
        parts.append("m:" + ";".join(f"{k}={v}" for k, v in kv))
    devices = vm.find("host_devices")
    for d in (devices if devices is not None else ()):
        parts.append(f"h:{_text(d, 'name')}:{_text(d, 'placeholder')}")
    consoles = vm.find("graphics_consoles")
    for g in (consoles if consoles is not None else ()):
        parts.append(f"g:{_text(g, 'protocol')}")
    return hashlib.blake2b("\n".join(sorted(parts)).encode(), digest_size=12).hexdigest()


def read_signatures(connection: Any, search: str | None,
                    names: frozenset[str]) -> dict[str, str]:
    """VM name -> device signature, for the spec's VMs the engine has (one request)."""
    service = connection.system_service().vms_service()
    body = fetch_xml(connection, service, "/vms", {"follow": VM_FOLLOW, "search": search})
    out: dict[str, str] = {}
    with collector_paused():
        for vm in elements(body):
            name = vm.findtext("name") or ""
            if name in names:
                out[name] = device_signature(vm)
    return out


def changed(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Names of VMs whose signature differs, appeared or vanished."""
    return sorted(n for n in set(before) | set(after) if before.get(n) != after.get(n))


class DevicePoller(_EnginePoller):
    """Polls the spec's VMs' devices and enqueues "device-poll" when any changed since the
    previous poll. Its own connection (SDK connections are not shared between threads); errors
    back off (capped) and reconnect, and the resync covers what it misses meanwhile."""

    name = "device-poller"
    failure_event = "controller.device_poll_failed"
    doing = "poll VM devices"

    def __init__(self, queue: WorkQueue, connect: Callable[[], Any],
                 desired: Callable[[], DesiredState], pacer: PollPacer = PollPacer(),
                 on_request: Callable[[bool], None] | None = None,
                 on_cost: Callable[[PollCost, float], None] | None = None,
                 backoff_cap: float = 30.0) -> None:
        super().__init__(queue)
        self._connect = connect
        self._desired = desired
        self.pacer = pacer
        self._on_request = on_request or (lambda _failed: None)
        self._on_cost = on_cost or (lambda _cost, _interval: None)
        self._backoff = Backoff(initial=2 * pacer.minimum, cap=max(backoff_cap,
                                                                   2 * pacer.minimum),
                                jitter=0.0)
        self.signatures: dict[str, str] | None = None
        self._changed: set[str] = set()            # since the last `take_changed`
        self._changed_lock = threading.Lock()
        self.last_cost: PollCost | None = None
        self.interval = pacer.minimum
        self.polls = 0
        self.ready = threading.Event()
        self._log = log.get_logger("controller.triggers")

    def poll_once(self, conn: Any) -> list[str]:
        """One poll: the VMs whose devices changed since the previous one ([] the first time)."""
        desired = self._desired()
        names = frozenset(v.name for v in desired.vms)
        wall, cpu = time.monotonic(), time.thread_time()
        try:
            current = read_signatures(conn, poll_search(desired), names) if names else {}
        except Exception:
            self._on_request(True)
            raise
        self._on_request(False)
        cost = PollCost(time.monotonic() - wall, time.thread_time() - cpu, len(current))
        self.last_cost = cost
        self.interval = self.pacer.interval(cost)
        self._on_cost(cost, self.interval)
        self.polls += 1
        previous, self.signatures = self.signatures, current
        self.ready.set()
        if previous is None:
            return []
        # A VM that joined or left the spec is the spec's change, not the engine's.
        moved = [n for n in changed(previous, current) if n in names]
        if moved:
            self._log.info("controller.devices_changed", vms=moved[:20], count=len(moved))
            with self._changed_lock:
                self._changed.update(moved)
            self.queue.put("device-poll")
        return moved

    def take_changed(self) -> frozenset[str]:
        """The VMs seen changed since the last call (the pass that follows re-reads them)."""
        with self._changed_lock:
            changed, self._changed = frozenset(self._changed), set()
        return changed

    def _failed(self, failures: int) -> None:
        if failures == 1:
            # The engine may be gone: a pass says so on /status and /readyz at once (and backs
            # off), rather than at the next resync.
            self.queue.put("device-poll")


__all__ = ["DevicePoller", "PollCost", "PollPacer", "changed", "device_signature",
           "poll_search", "read_signatures"]
