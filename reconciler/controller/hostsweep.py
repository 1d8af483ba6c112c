"""Host-level drift without a full pass: a probe sweep spread over its own interval.

A modprobe file or a boot entry edited by hand on a host raises no engine event. The sweep probes
the spec's hosts one at a time, spread evenly over `interval` (default 5 minutes): with N hosts,
one probe every interval/N seconds, round-robin, so each host is probed at most once per
interval and the load is flat (no burst of 1,000 SSH sessions). A probe whose facts differ from
what the host last said (the last pass's probe of it, or the sweep's previous one) enqueues
"host-sweep"; the pass that follows probes and plans as every pass does.

Facts that change without the fleet changing (timings, nvidia-smi's figures, running vGPU
instances) are left out of the comparison, as plan fingerprints leave them out.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

from reconciler import log
from reconciler.access.transport import Transport
from reconciler.controller.triggers import WorkQueue, _Trigger
from reconciler.model.facts import ProbeFacts
from reconciler.plan.fingerprint import canonical_json, fingerprint

Probe = Callable[[Transport, str], ProbeFacts]


def probe_digest(probe: ProbeFacts) -> str | None:
    """What the sweep compares; None for a failed probe (nothing known, nothing to compare)."""
    return fingerprint(canonical_json(probe)) if probe.ok else None


class HostSweep(_Trigger):
    """Probes one host every `interval / len(hosts)` seconds; "host-sweep" on a difference."""

    name = "host-sweep"

    def __init__(self, queue: WorkQueue, probe: Probe, interval: float = 300.0) -> None:
        super().__init__(queue)
        self._probe = probe
        self.interval = interval
        self._lock = threading.Lock()
        self._transports: dict[str, Transport] = {}
        self._known: dict[str, str] = {}
        self._order: list[str] = []
        self._next = 0
        self.probes = 0
        self._log = log.get_logger("controller.triggers")

    def update(self, transports: Mapping[str, Transport], probes: Iterable[ProbeFacts]) -> None:
        """After a pass: the hosts to sweep and what each said in that pass."""
        with self._lock:
            self._transports = dict(transports)
            self._order = sorted(self._transports)
            for probe in probes:
                digest = probe_digest(probe)
                if digest is not None:
                    self._known[probe.host] = digest
            self._known = {h: d for h, d in self._known.items() if h in self._transports}

    def step(self) -> float:
        """Probe the next host; how long to wait before the one after."""
        with self._lock:
            if not self._order:
                return min(self.interval, 5.0)
            self._next %= len(self._order)
            host = self._order[self._next]
            self._next += 1
            transport = self._transports[host]
            gap = self.interval / len(self._order)
        probe = self._probe(transport, host)
        self.probes += 1
        digest = probe_digest(probe)
        with self._lock:
            before = self._known.get(host)
            if digest is not None:
                self._known[host] = digest
        if digest is not None and before is not None and digest != before:
            self._log.info("controller.host_changed", host=host)
            self.queue.put("host-sweep")
        return gap

    def _run(self) -> None:
        delay = min(self.interval, 5.0)
        while not self._stop.wait(delay):
            try:
                delay = self.step()
            except Exception as exc:  # noqa: BLE001 - one host must not end the sweep
                self._log.warning("controller.host_sweep_failed", error=str(exc))
                delay = min(self.interval, 5.0)


__all__ = ["HostSweep", "probe_digest"]
