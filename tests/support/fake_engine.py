"""A recording fake of `EngineOps` and an in-memory `Journal`, for the executor's state machine.

The lab engine is the integration test: real HTTPS, the real SDK, simulated hosts. These fakes
are for what the lab makes slow or hard to arrange: every way a host cycle can go wrong, each in
well under a second, with the exact operations called and the journal rows written.

`FakeEngine` keeps hosts and VMs with the statuses the engine's operations move them through
(deactivate -> maintenance, install -> maintenance, activate -> up, shutdown -> down, start ->
up; a VM pinned to a host that is not up does not start) and records every operation as "op name" ("deactivate_host h1") in `calls`, every read in
`reads`. A failure is scripted per operation and object:

    FakeEngine({"h1": "up"}, {"v1": {"status": "up", "host": "h1"}},
               script={"deactivate_host h1": "pinned"})

Each scripted behaviour raises what the real operation (reconciler.apply.engine_ops) raises in
that situation and leaves the status the engine would leave:

    refused          EngineRefused: the engine said no (a 4xx); nothing changed
    precondition     PreconditionFailed (409): e.g. the host is not in maintenance
    unavailable      EngineUnavailable: no answer, retries used up; nothing changed
    pinned           deactivate: MaintenanceBlocked up front, naming the pinned VMs; still up
    stuck            deactivate: MaintenanceBlocked after the timeout; preparing_for_maintenance
    interrupted      deactivate: a stop request ends the wait (WaitInterrupted) while the host is
                     preparing_for_maintenance
    install_failed   install: InstallFailed; install_failed
    non_operational  install / activate: ActivationFailed; non_operational
    never_returns    install / activate: HostDidNotReturn; non_responsive
    timeout          the operation's wait ran out (HostDidNotReturn, VmDidNotStop, ...); the
                     status is what it was
    gone             the object is deleted: NotFoundOnEngine now, and reads find nothing
    lies             says it worked and changes nothing (only verification can tell)

`on_call` runs a hook when an operation starts (e.g. setting the stop event, as SIGTERM would).
`open_ops()` is an `OpenOps`: each worker gets a `FakeEngine` of its own over the same fleet.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, cast

from reconciler.apply.engine_ops import (ActivationFailed, ChangeNotVisible, HostDidNotReturn,
                                         InstallFailed, MaintenanceBlocked, Outcome,
                                         VmDidNotStart, VmDidNotStop)
from reconciler.apply.waiting import WaitInterrupted
from reconciler.apply.verify import ObjectView, VerifyReport, verify
from reconciler.engine.errors import (EngineRefused, EngineUnavailable, NotFoundOnEngine,
                                      PreconditionFailed)
from reconciler.errors import ReconcilerError
from reconciler.model.facts import Host, Vm
from reconciler.plan.actions import Verification
from reconciler.store.interface import StoreError
from reconciler.store.records import STEP_OUTCOMES, JournalEntry, StepOutcome

BEHAVIOURS = frozenset({"refused", "precondition", "unavailable", "pinned", "stuck", "interrupted",
                        "install_failed", "non_operational", "never_returns", "timeout", "gone",
                        "lies"})

# The wait error each operation raises when it runs out of time.
_TIMEOUT_ERROR: dict[str, type[ReconcilerError]] = {
    "deactivate_host": HostDidNotReturn, "install_host": HostDidNotReturn,
    "activate_host": HostDidNotReturn, "shutdown_vm": VmDidNotStop, "start_vm": VmDidNotStart}


@dataclass
class _Fleet:
    """What every `FakeEngine` of one test shares: the objects, the script and the record."""

    hosts: dict[str, Host]
    vms: dict[str, Vm]
    script: dict[str, str]
    on_call: dict[str, Callable[[], object]]
    calls: list[str] = field(default_factory=list)
    reads: list[str] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    opened: int = 0
    closed: int = 0
    open_failures: int = 0
    threads: set[str] = field(default_factory=set)


def _host(name: str, spec: str | Mapping[str, Any]) -> Host:
    data = {"status": spec} if isinstance(spec, str) else dict(spec)
    return Host(id=f"id-{name}", name=name, cluster=data.get("cluster", "c1"),
                status=data["status"])


def _vm(name: str, spec: str | Mapping[str, Any]) -> Vm:
    data = {"status": spec} if isinstance(spec, str) else dict(spec)
    host = data.get("host")
    return Vm(id=f"id-{name}", name=name, cluster=data.get("cluster", "c1"),
              status=data["status"], host=host,
              pinned_hosts=(host,) if host and data.get("pinned", True) else (),
              affinity="pinned" if host and data.get("pinned", True) else None)


class FakeEngine:
    """An `EngineOps` over a scripted fleet (see the module docstring)."""

    def __init__(self, hosts: Mapping[str, str | Mapping[str, Any]],
                 vms: Mapping[str, str | Mapping[str, Any]] | None = None, *,
                 script: Mapping[str, str] | None = None,
                 on_call: Mapping[str, Callable[[], object]] | None = None,
                 _fleet: _Fleet | None = None) -> None:
        for key, behaviour in (script or {}).items():
            if behaviour not in BEHAVIOURS:
                raise ValueError(f"{key}: unknown behaviour {behaviour!r}")
        self._fleet = _fleet or _Fleet(
            hosts={n: _host(n, s) for n, s in hosts.items()},
            vms={n: _vm(n, s) for n, s in (vms or {}).items()},
            script=dict(script or {}), on_call=dict(on_call or {}))
        self.requests = 0
        self.failed = 0

    # ---- what a test looks at ---------------------------------------------------------------

    @property
    def calls(self) -> list[str]:
        """Every operation called, in order, on every `FakeEngine` of this fleet."""
        with self._fleet.lock:
            return list(self._fleet.calls)

    @property
    def reads(self) -> list[str]:
        with self._fleet.lock:
            return list(self._fleet.reads)

    def statuses(self) -> tuple[dict[str, str], dict[str, str]]:
        with self._fleet.lock:
            return ({n: h.status for n, h in self._fleet.hosts.items()},
                    {n: v.status for n, v in self._fleet.vms.items()})

    @property
    def fleet(self) -> _Fleet:
        return self._fleet

    # ---- OpenOps ----------------------------------------------------------------------------

    @contextmanager
    def open_ops(self) -> Iterator[FakeEngine]:
        """A worker's own `FakeEngine` (its own request counts) over the same fleet; opening
        fails with EngineUnavailable while `fleet.open_failures` is above zero."""
        with self._fleet.lock:
            if self._fleet.open_failures > 0:
                self._fleet.open_failures -= 1
                raise EngineUnavailable("cannot connect to the engine (scripted)")
            self._fleet.opened += 1
        try:
            yield FakeEngine({}, _fleet=self._fleet)
        finally:
            with self._fleet.lock:
                self._fleet.closed += 1

    # ---- reads ------------------------------------------------------------------------------

    def _read(self, what: str) -> None:
        with self._fleet.lock:
            self._fleet.reads.append(what)
            self._fleet.threads.add(threading.current_thread().name)
            self.requests += 1

    def host(self, name: str) -> Host | None:
        self._read(f"host {name}")
        with self._fleet.lock:
            return self._fleet.hosts.get(name)

    def vm(self, name: str) -> Vm | None:
        self._read(f"vm {name}")
        with self._fleet.lock:
            return self._fleet.vms.get(name)

    def cluster_hosts(self, cluster: str) -> list[Host]:
        self._read(f"cluster_hosts {cluster}")
        with self._fleet.lock:
            return [h for h in self._fleet.hosts.values() if h.cluster == cluster]

    def _view(self, key: str, _probe: bool) -> ObjectView:
        kind, _, name = key.partition(":")
        with self._fleet.lock:
            if kind == "host":
                return ObjectView(key, host=self._fleet.hosts.get(name))
            return ObjectView(key, vm=self._fleet.vms.get(name))

    def verify(self, checks: Sequence[Verification], timeout: float) -> VerifyReport:
        self._read("verify " + ",".join(sorted({c.target for c in checks})))
        # The real evaluation of the checks, on this fleet's facts (there is no host probe, so
        # probe checks come back as not observable, as they do for a host without a transport).
        return verify(cast(Any, None), checks, timeout, 0.0, fetch=self._view)

    def request_counts(self) -> tuple[int, int]:
        return self.requests, self.failed

    # ---- changes ----------------------------------------------------------------------------

    def _start(self, op: str, name: str) -> str | None:
        """Record the call, run its hook, and return its scripted behaviour (None: works)."""
        key = f"{op} {name}"
        with self._fleet.lock:
            self._fleet.calls.append(key)
            self._fleet.threads.add(threading.current_thread().name)
            self.requests += 1
            hook = self._fleet.on_call.get(key)
            behaviour = self._fleet.script.get(key)
        if hook is not None:
            hook()
        return behaviour

    def _fail(self, error: ReconcilerError) -> ReconcilerError:
        with self._fleet.lock:
            self.failed += 1
        return error

    def _common(self, op: str, kind: str, name: str, behaviour: str | None) -> None:
        """The behaviours every operation shares; raises for them."""
        with self._fleet.lock:
            objects: dict[str, Any] = self._fleet.hosts if kind == "host" else self._fleet.vms
            if behaviour == "gone":
                objects.pop(name, None)
            if name not in objects:
                raise self._fail(NotFoundOnEngine(f"no {kind} named {name!r} on the engine"))
        if behaviour == "refused":
            raise self._fail(EngineRefused(f"{op} {name}: the engine refused (scripted)",
                                           code=400))
        if behaviour == "precondition":
            raise self._fail(PreconditionFailed(
                f"{op} {name}: the engine refused: precondition not met (scripted)", code=409))
        if behaviour == "unavailable":
            raise self._fail(EngineUnavailable(f"{op} {name}: no answer from the engine "
                                               "(scripted)"))
        if behaviour == "timeout":
            error = _TIMEOUT_ERROR.get(op, ChangeNotVisible)
            raise self._fail(error(f"{op} {name}: timed out (scripted)"))

    def _set_host(self, name: str, status: str) -> str:
        with self._fleet.lock:
            before = self._fleet.hosts[name].status
            self._fleet.hosts[name] = replace(self._fleet.hosts[name], status=status)
            return before

    def _set_vm(self, name: str, status: str) -> str:
        with self._fleet.lock:
            before = self._fleet.vms[name].status
            self._fleet.vms[name] = replace(self._fleet.vms[name], status=status)
            return before

    def _vms_on(self, host: str) -> tuple[str, ...]:
        with self._fleet.lock:
            return tuple(sorted(f"{v.name} (pinned)" if v.affinity == "pinned" else v.name
                                for v in self._fleet.vms.values()
                                if v.host == host and v.status != "down"))

    def _field(self, op: str, kind: str, name: str, summary: str) -> Outcome:
        behaviour = self._start(op, name)
        self._common(op, kind, name, behaviour)
        return Outcome(behaviour != "lies", f"{kind} {name}", summary)

    def set_kernel_cmdline(self, host: str, cmdline: str,
                           owned: Sequence[str] | None = None) -> Outcome:
        return self._field("set_kernel_cmdline", "host", host, f"kernel cmdline -> {cmdline!r}")

    def set_vgpu_placement(self, host: str, placement: str) -> Outcome:
        return self._field("set_vgpu_placement", "host", host, f"vGPU placement -> {placement}")

    def deactivate_host(self, host: str, timeout: float, *, reason: str | None = None
                        ) -> Outcome:
        behaviour = self._start("deactivate_host", host)
        self._common("deactivate_host", "host", host, behaviour)
        if behaviour == "pinned":
            raise self._fail(MaintenanceBlocked(
                f"host {host} cannot move to maintenance: it runs non-migratable VMs",
                self._vms_on(host), code=409))
        if behaviour == "interrupted":
            self._set_host(host, "preparing_for_maintenance")
            raise self._fail(WaitInterrupted(f"stopped while host {host} was moving to "
                                             "maintenance (status preparing_for_maintenance)"))
        if behaviour == "stuck":
            self._set_host(host, "preparing_for_maintenance")
            vms = self._vms_on(host)
            raise self._fail(MaintenanceBlocked(
                f"host {host} is stuck in preparing_for_maintenance after {timeout:g}s; VMs "
                f"still running on it (they cannot migrate): {', '.join(vms) or 'none listed'}",
                vms))
        before = self._set_host(host, "maintenance" if behaviour != "lies" else
                                self._fleet.hosts[host].status)
        return Outcome(before != "maintenance", f"host {host}", f"{before} -> maintenance")

    def install_host(self, host: str, reboot: bool, activate: bool, timeout: float) -> Outcome:
        behaviour = self._start("install_host", host)
        self._common("install_host", "host", host, behaviour)
        self._after_reboot(host, behaviour, "installing host")
        target = "up" if activate else "maintenance"
        if behaviour != "lies":
            self._set_host(host, target)
        return Outcome(True, f"host {host}",
                       f"installed ({'rebooted, ' if reboot else ''}now {target})")

    def activate_host(self, host: str, timeout: float) -> Outcome:
        behaviour = self._start("activate_host", host)
        self._common("activate_host", "host", host, behaviour)
        self._after_reboot(host, behaviour, "activating host")
        before = self._set_host(host, "up" if behaviour != "lies" else
                                self._fleet.hosts[host].status)
        return Outcome(before != "up", f"host {host}", f"{before} -> up")

    def _after_reboot(self, host: str, behaviour: str | None, doing: str) -> None:
        if behaviour == "install_failed":
            self._set_host(host, "install_failed")
            raise self._fail(InstallFailed(f"installing host {host} failed (install_failed)"))
        if behaviour == "non_operational":
            self._set_host(host, "non_operational")
            raise self._fail(ActivationFailed(f"host {host} went non_operational"))
        if behaviour == "never_returns":
            self._set_host(host, "non_responsive")
            raise self._fail(HostDidNotReturn(f"{doing} {host}: it did not come back "
                                              "(last status: non_responsive)"))

    def pin_vm(self, vm: str, host: str) -> Outcome:
        return self._field("pin_vm", "vm", vm, f"pinned to {host}")

    def attach_host_device(self, vm: str, device_name: str) -> Outcome:
        return self._field("attach_host_device", "vm", vm, f"host device {device_name} attached")

    def detach_host_device(self, vm: str, device_name: str) -> Outcome:
        return self._field("detach_host_device", "vm", vm, f"host device {device_name} detached")

    def add_mediated_device(self, vm: str, mdev_type: str, nodisplay: bool,
                            driver_params: str | None, *, instances: int | None = None
                            ) -> Outcome:
        return self._field("add_mediated_device", "vm", vm, f"mediated device ({mdev_type}) added")

    def remove_mediated_device(self, vm: str, mdev_id: str) -> Outcome:
        return self._field("remove_mediated_device", "vm", vm, f"mediated device {mdev_id} removed")

    def update_mediated_device(self, vm: str, mdev_id: str, mdev_type: str, nodisplay: bool,
                               driver_params: str | None) -> Outcome:
        return self._field("update_mediated_device", "vm", vm, f"mediated device {mdev_id} updated")

    def add_vnc_console(self, vm: str) -> Outcome:
        return self._field("add_vnc_console", "vm", vm, "VNC console added")

    def shutdown_vm(self, vm: str, timeout: float, *, stop_timeout: float) -> Outcome:
        behaviour = self._start("shutdown_vm", vm)
        self._common("shutdown_vm", "vm", vm, behaviour)
        before = self._set_vm(vm, "down" if behaviour != "lies" else self._fleet.vms[vm].status)
        return Outcome(before != "down", f"vm {vm}", f"{before} -> down (shutdown)")

    def start_vm(self, vm: str, timeout: float) -> Outcome:
        behaviour = self._start("start_vm", vm)
        self._common("start_vm", "vm", vm, behaviour)
        with self._fleet.lock:
            pinned = self._fleet.vms[vm].pinned_hosts
            hosts = self._fleet.hosts
            # The engine's rule: a pinned VM runs only on its host, and only on one that is up.
            if pinned and not any(h in hosts and hosts[h].status == "up" for h in pinned):
                raise self._fail(PreconditionFailed(
                    f"cannot run vm {vm}: its pinned host {', '.join(pinned)} is not up",
                    code=409))
        before = self._set_vm(vm, "up" if behaviour != "lies" else self._fleet.vms[vm].status)
        return Outcome(before != "up", f"vm {vm}", f"{before} -> up")


class MemoryJournal:
    """The store's `Journal` protocol in memory, with the store's checks: an outcome outside
    ok / failed / skipped is a ValueError, ending an entry twice a StoreError."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, JournalEntry] = {}
        self._ids = itertools.count(1)

    def journal_begin(self, run_id: str, step_id: str, target: str, action: str,
                      disruption: str, detail: Mapping[str, Any] | None = None) -> int:
        with self._lock:
            entry_id = next(self._ids)
            # Entry ids double as seconds: begin order is time order, as in the store.
            self._entries[entry_id] = JournalEntry(
                entry_id, run_id, step_id, target, action, disruption, dict(detail or {}),
                datetime.fromtimestamp(entry_id, timezone.utc), None, None, None, None)
            return entry_id

    def journal_end(self, entry_id: int, outcome: StepOutcome, message: str | None = None,
                    duration: float | None = None) -> None:
        if outcome not in STEP_OUTCOMES:
            raise ValueError(f"invalid step outcome {outcome!r}")
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is None or entry.outcome is not None:
                raise StoreError(f"journal entry {entry_id} is unknown or already ended")
            self._entries[entry_id] = replace(entry, outcome=outcome, message=message,
                                              duration=duration,
                                              finished_at=entry.started_at)

    def journal(self, run_id: str) -> list[JournalEntry]:
        with self._lock:
            return [e for e in self._entries.values() if e.run_id == run_id]

    def unfinished_steps(self, engine_key: str,
                         exclude_run: str | None = None) -> list[JournalEntry]:
        with self._lock:
            return [e for e in self._entries.values()
                    if e.outcome is None and e.run_id != exclude_run]

    def abandon_unfinished(self, engine_key: str, by_run: str) -> list[JournalEntry]:
        left = self.unfinished_steps(engine_key, by_run)
        with self._lock:
            for entry in left:
                self._entries[entry.entry_id] = replace(entry, outcome="abandoned")
        return left

    def rows(self, run_id: str) -> list[str]:
        """The run's entries as "STEP TARGET ACTION: OUTCOME" ("open" for one never ended)."""
        return [f"{e.step_id} {e.target} {e.action}: {e.outcome or 'open'}"
                for e in self.journal(run_id)]


__all__ = ["BEHAVIOURS", "FakeEngine", "MemoryJournal"]
