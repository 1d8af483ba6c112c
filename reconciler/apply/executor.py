"""The executor: carries out a Plan's actions through the verified engine and host operations.

Order and safety (docs/apply.md):
- host settings that need no reboot first; then host cycles wave by wave, each cycle only after
  `Budget` confirmed that taking the host out of `up` keeps its cluster within maxUnavailable;
  a cycle is: stop the VMs the plan stops for it -> deactivate (maintenance, migrations) -> our
  modprobe.d file -> dracut -> engine kernel cmdline / vGPU placement -> install with reboot
  (activate=false) -> activate -> re-observe and verify (booted args, modules, vGPU manager);
- then each VM's changes (pin, devices, mediated devices, console, stop/start as planned).
- every step is journaled before and after, and after it returns its target is re-observed and
  the action's verifications checked: a step that did not take effect fails;
- a host that fails its cycle after deactivation but is healthy is activated again (with the VMs
  stopped for it started again) before the rollout halts; a host that does not come back is
  reported degraded and the rollout halts: hosts done stay done, hosts not started stay untouched;
- a VM whose step fails keeps its remaining steps; other VMs go on;
- actions above `max_disruption` are not run and are reported as pending;
- a `stop` event (SIGTERM in the controller) is honoured only where nothing is left down: before
  a unit starts and before a step that takes something down, never between a deactivate and its
  host's activation nor between a VM's stop and its start. Cycles already running finish, VMs this
  run stopped are started again, the rest is reported not started and the result says
  `halted="stopped"`.
"""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from reconciler.apply import engine_ops as ops
from reconciler.apply import host_ops
from reconciler.apply.progress import LogProgress, Progress, StepEvent
from reconciler.apply.rollout import Budget, Unit, units_of
from reconciler.apply.verify import ObjectReader, VerificationFailed, verify
from reconciler.errors import ApplyError, ReconcilerError
from reconciler.log import get_logger
from reconciler.access.transport import Transport
from reconciler.plan.actions import (Action, AddMediatedDevice, AttachHostDevice,
                                     DetachHostDevice, Disruption, HostCycle, PinVm,
                                     RegenerateInitramfs, RemoveMediatedDevice, SetConsoleVnc,
                                     SetKernelCmdline, SetVgpuPlacement, StartVm, StopVm,
                                     UpdateMediatedDevice, Verification, WriteModprobeFile)
from reconciler.plan.expand import MODPROBE_PATH
from reconciler.plan.result import Plan
from reconciler.store import Store

log = get_logger(__name__)

# Step outcomes as reported; the journal records ok / failed / skipped.
OK, FAILED, PENDING, NOT_STARTED = "ok", "failed", "pending", "not-started"
# `ApplyResult.halted` when the stop event ended the run at a safe point.
STOPPED = "stopped"
_HEALTHY_DOWN = frozenset({"maintenance", "preparing_for_maintenance"})
_INSTALLING = frozenset({"installing", "reboot", "installing_os"})
_ACTIVATING = frozenset({"initializing", "connecting", "unassigned"})
VGPU_MODULE = "nvidia_vgpu_vfio"


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of wait may take before the step fails."""

    deactivate: float = 600.0
    install: float = 1800.0        # reinstall plus reboot
    activate: float = 600.0
    vm_shutdown: float = 300.0     # graceful shutdown, then a forced stop
    vm_stop: float = 120.0
    vm_start: float = 300.0
    verify: float = 60.0
    probe: float = 60.0

    @classmethod
    def for_hosts(cls, host_timeout: float, vm_timeout: float | None = None) -> Timeouts:
        vm = vm_timeout if vm_timeout is not None else cls.vm_shutdown
        return cls(deactivate=host_timeout, install=host_timeout, activate=host_timeout,
                   vm_shutdown=vm, vm_stop=vm, vm_start=vm)


@dataclass(frozen=True)
class StepRecord:
    step_id: str
    target: str
    action: str
    disruption: str
    outcome: str                   # ok | failed | pending | not-started
    message: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step_id, "target": self.target, "action": self.action,
                "disruption": self.disruption, "outcome": self.outcome,
                "message": self.message, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class ApplyResult:
    run_id: str
    steps: tuple[StepRecord, ...]
    degraded: Mapping[str, str] = field(default_factory=dict)   # host -> why
    halted: str | None = None      # why the rollout stopped early
    seconds: float = 0.0

    def by_outcome(self, outcome: str) -> tuple[StepRecord, ...]:
        return tuple(s for s in self.steps if s.outcome == outcome)

    @property
    def failed(self) -> tuple[StepRecord, ...]:
        return self.by_outcome(FAILED)

    @property
    def pending(self) -> tuple[StepRecord, ...]:
        return self.by_outcome(PENDING)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.degraded and self.halted is None

    @property
    def stopped(self) -> bool:
        return self.halted == STOPPED


class _Halt(Exception):
    """Stops the rollout; the reason is already recorded."""


class Executor:
    """Runs one plan. Build one per apply run (it keeps the run's step records)."""

    def __init__(self, *, connection: Any, reader: ObjectReader,
                 transports: Mapping[str, Transport], store: Store, run_id: str,
                 budget: Budget, vgpu_required: Callable[[str], bool] = lambda _h: False,
                 progress: Progress | None = None, timing: ops.Timing = ops.DEFAULT_TIMING,
                 timeouts: Timeouts = Timeouts(),
                 max_disruption: Disruption = Disruption.HOST_REBOOT,
                 connect: Callable[[], Any] | None = None, max_parallel: int = 8,
                 restart_policy: Callable[[str], str | None] = lambda _vm: None,
                 stop: threading.Event | None = None) -> None:
        self._main_conn = connection
        self._main_reader = reader
        # Host cycles of one wave run side by side when we can open more connections (an SDK
        # connection serves one thread); each worker keeps its connection and reader here.
        self._connect = connect
        self.max_parallel = max(1, max_parallel)
        self._local = threading.local()
        self._budget_lock = threading.Lock()
        self._in_flight: set[str] = set()
        self.transports = transports
        self.restart_policy = restart_policy
        self.store = store
        self.run_id = run_id
        self.budget = budget
        self.vgpu_required = vgpu_required
        self.progress = progress or LogProgress()
        self.timing = timing
        self.timeouts = timeouts
        self.max_disruption = max_disruption
        self._steps: list[StepRecord] = []
        self._degraded: dict[str, str] = {}
        self._halted: str | None = None
        self._stop = stop
        # VMs this run stopped and has not started again: a stop request waits for them.
        self._down_vms: set[str] = set()
        # Requests and failed requests of the cycles' own connections (closed after each cycle).
        self._worker_requests = 0
        self._worker_errors = 0

    @property
    def conn(self) -> Any:
        return getattr(self._local, "conn", None) or self._main_conn

    @property
    def reader(self) -> ObjectReader:
        return getattr(self._local, "reader", None) or self._main_reader

    @property
    def _wave(self) -> int | None:
        return getattr(self._local, "wave", None)

    @_wave.setter
    def _wave(self, value: int | None) -> None:
        self._local.wave = value

    # ---- the run ----------------------------------------------------------------------------

    def engine_counts(self) -> tuple[int, int]:
        """(requests, failed requests) sent so far on this run's engine connections."""
        with self._budget_lock:
            return (getattr(self._main_conn, "request_count", 0) + self._worker_requests,
                    getattr(self._main_conn, "failed_count", 0) + self._worker_errors)

    def steps_total(self, units: Sequence[Unit]) -> int:
        """The steps `run` reports through the progress hook when all goes well: every action
        within --max-disruption, plus a cycle's deactivate, install and activate stages."""
        total = 0
        for unit in units:
            if unit.kind == "host-cycle":
                if all(self._allowed(a) for _, a in unit.actions):
                    total += len(unit.actions) + 3
            else:
                total += sum(1 for _, a in unit.actions if self._allowed(a))
        return total

    def run(self, plan: Plan) -> ApplyResult:
        started = time.monotonic()
        units = units_of(plan.actions)
        announce = getattr(self.progress, "run_started", None)
        if announce is not None:
            announce(self.run_id, self.steps_total(units))
        position = 0
        while position < len(units):
            unit = units[position]
            if unit.kind == "host-cycle":
                wave = [u for u in units[position:] if u.kind == "host-cycle"
                        and u.wave == unit.wave]
                position += len(wave)
                self._run_wave(wave)
                continue
            position += 1
            if self._halted is not None and not self._restarts_our_vm(unit):
                self._not_started(unit)
                continue
            if self._stop_now() and not self._restarts_our_vm(unit):
                self._not_started(unit)
                continue
            self._wave = unit.wave
            try:
                if unit.kind == "host-config":
                    self._simple(unit, halt_on_failure=True)
                else:
                    self._simple(unit, halt_on_failure=False)
            except _Halt:
                pass
        return self.result(time.monotonic() - started)

    def _run_wave(self, wave: Sequence[Unit]) -> None:
        """One wave's host cycles: side by side when there is more than one (the budget still
        decides, host by host, whether each may start); a failure lets the cycles already
        running finish and starts nothing more."""
        if self._connect is None or len(wave) == 1:
            for unit in wave:
                self._cycle_guarded(unit)
            return
        with ThreadPoolExecutor(max_workers=min(len(wave), self.max_parallel),
                                thread_name_prefix="host-cycle") as pool:
            for future in [pool.submit(self._cycle_worker, unit) for unit in wave]:
                future.result()

    def _cycle_worker(self, unit: Unit) -> None:
        assert self._connect is not None
        if self._halted is not None:
            self._not_started(unit)
            return
        try:
            conn = self._connect()
        except ReconcilerError as err:
            self._fail_unit_quietly(unit, f"cannot open an engine connection: {err}")
            return
        self._local.conn = conn
        self._local.reader = self._main_reader.with_connection(conn)
        try:
            self._cycle_guarded(unit)
        finally:
            self._local.conn = self._local.reader = None
            with self._budget_lock:
                self._worker_requests += getattr(conn, "request_count", 0)
                self._worker_errors += getattr(conn, "failed_count", 0)
            try:
                conn.close()
            except Exception as err:  # noqa: BLE001 - a failed logout must not hide the outcome
                log.debug("apply.connection_close_failed", error=str(err))

    def _cycle_guarded(self, unit: Unit) -> None:
        if self._halted is not None or self._stop_now():
            self._not_started(unit)
            return
        self._wave = unit.wave
        try:
            self._host_cycle(unit)
        except _Halt:
            pass
        finally:
            with self._budget_lock:
                self._in_flight.discard(unit.name)

    def _stop_now(self) -> bool:
        """True once the stop event is set (and from then on); the first caller halts the run."""
        if self._stop is None or not self._stop.is_set():
            return False
        self._halt(STOPPED)
        return True

    def _restarts_our_vm(self, unit: Unit) -> bool:
        """A VM unit that starts a VM this run stopped (for a host cycle): it runs even when
        stopping or halted by a failure elsewhere, so that no VM is left down by us."""
        if self._halted is None or unit.kind != "vm":
            return False
        with self._budget_lock:
            down = unit.name in self._down_vms
        return down and any(isinstance(a, StartVm) for _, a in unit.actions)

    def _fail_unit_quietly(self, unit: Unit, why: str) -> None:
        try:
            self._fail_unit(unit, why)
        except _Halt:
            pass

    def _not_started(self, unit: Unit) -> None:
        for index, action in unit.actions:
            self._record(StepRecord(str(index), action.target, action.kind,
                                    action.disruption.value, NOT_STARTED,
                                    f"not started: {self._halted}"))

    def _record(self, step: StepRecord) -> None:
        self._steps.append(step)

    def _allowed(self, action: Action) -> bool:
        return action.disruption <= self.max_disruption

    def _pending(self, index: int, action: Action) -> None:
        why = (f"pending: {action.disruption.value} is above --max-disruption "
               f"{self.max_disruption.value}")
        entry = self.store.journal_begin(self.run_id, str(index), action.target, action.kind,
                                         action.disruption.value, {"skipped": why})
        self.store.journal_end(entry, "skipped", why, 0.0)
        self._record(StepRecord(str(index), action.target, action.kind, action.disruption.value,
                                PENDING, why))

    # ---- one journaled step -----------------------------------------------------------------

    def _step(self, step_id: str, target: str, name: str, disruption: str,
              body: Callable[[], str | None], detail: Mapping[str, Any] | None = None
              ) -> tuple[bool, str | None, ReconcilerError | None]:
        """Journal, run, journal again; returns (ok, message, error)."""
        event = StepEvent(self.run_id, step_id, target, name, disruption, self._wave)
        entry = self.store.journal_begin(self.run_id, step_id, target, name, disruption,
                                         dict(detail or {}))
        self.progress.step_started(event)
        started = time.monotonic()
        try:
            message = body()
        except ReconcilerError as err:
            seconds = time.monotonic() - started
            self.store.journal_end(entry, "failed", str(err), seconds)
            self.progress.step_finished(event, FAILED, seconds, str(err))
            self._record(StepRecord(step_id, target, name, disruption, FAILED, str(err),
                                    seconds))
            return False, str(err), err
        except BaseException as err:
            # A bug or an interrupt: close the journal entry so the record says what happened.
            seconds = time.monotonic() - started
            self.store.journal_end(entry, "failed", f"interrupted: {type(err).__name__}: {err}",
                                   seconds)
            raise
        seconds = time.monotonic() - started
        self.store.journal_end(entry, "ok", message, seconds)
        if name in ("stop-vm", "start-vm") and target.startswith("vm:"):
            with self._budget_lock:
                if name == "stop-vm":
                    self._down_vms.add(target[3:])
                else:
                    self._down_vms.discard(target[3:])
        self.progress.step_finished(event, OK, seconds, message)
        self._record(StepRecord(step_id, target, name, disruption, OK, message, seconds))
        return True, message, None

    def _action_step(self, index: int, action: Action, suffix: str = "") -> bool:
        def body() -> str | None:
            summary = self._perform(action)
            report = self._verify(action.verify)
            return summary + report
        ok, _, _ = self._step(str(index) + suffix, action.target, action.kind,
                              action.disruption.value, body,
                              {"description": action.description, "before": action.before,
                               "after": action.after})
        return ok

    def _verify(self, checks: Sequence[Verification]) -> str:
        if not checks:
            return ""
        report = verify(self.reader, checks, self.timeouts.verify,
                        self.timing.poll if self.timing.poll.initial < 1 else 0.5)
        if report.unobservable:
            return "; not observable here: " + ", ".join(report.unobservable)
        return "; verified"

    # ---- simple units: host settings without a cycle, VM changes -----------------------------

    def _simple(self, unit: Unit, *, halt_on_failure: bool) -> None:
        for position, (index, action) in enumerate(unit.actions):
            if isinstance(action, StopVm) and self._stop_now():
                self._rest_not_started(unit)
                return
            if not self._allowed(action):
                self._pending(index, action)
                continue
            if not self._action_step(index, action):
                for later_index, later in unit.actions[position + 1:]:
                    self._record(StepRecord(str(later_index), later.target, later.kind,
                                            later.disruption.value, NOT_STARTED,
                                            f"not started: an earlier step of {unit.target} "
                                            "failed"))
                if halt_on_failure:
                    self._halt(f"{unit.target}: {action.kind} failed")
                    raise _Halt
                return

    # ---- bringing back what a dead run left down ----------------------------------------------

    def recover(self, hosts: Sequence[str], vms: Sequence[str]) -> None:
        """Activate hosts and start VMs that a dead run took down and never brought back.

        A host still installing is awaited first; a host in any other state than maintenance
        (non_responsive, install_failed, ...) is reported degraded and left for a person.
        """
        for name in hosts:
            host = self._safe_host(name)
            if host is None or host.status == "up":
                continue
            key = f"host:{name}"
            if host.status in _INSTALLING:
                ok, _, err = self._step("recover.install", key, "install",
                                        Disruption.HOST_REBOOT.value,
                                        lambda: ops.install_host(
                                            self.conn, name, reboot=True, activate=False,
                                            timeout=self.timeouts.install,
                                            correlation_id=self.run_id,
                                            timing=self.timing).summary,
                                        {"why": "an interrupted run left it installing"})
                if not ok:
                    self._degraded[name] = f"left installing by an interrupted run: {err}"
                    continue
            elif host.status not in _HEALTHY_DOWN | _ACTIVATING:
                self._degraded[name] = (f"an interrupted run took it down and it is "
                                        f"{host.status}; not touched")
                continue
            ok, _, err = self._step("recover.activate", key, "activate",
                                    Disruption.HOST_REBOOT.value,
                                    lambda: ops.activate_host(
                                        self.conn, name, self.timeouts.activate,
                                        correlation_id=self.run_id, timing=self.timing).summary,
                                    {"why": "an interrupted run left it out of up"})
            if not ok:
                self._degraded[name] = f"activating it again failed: {err}"
        for name in vms:
            try:
                vm = self.reader.vm(name)
            except ReconcilerError as err:
                log.warning("apply.vm_unreadable", vm=name, error=str(err))
                continue
            if vm is None or vm.status != "down":
                continue
            self._step("recover.start", f"vm:{name}", "start-vm", Disruption.VM_RESTART.value,
                       lambda: ops.start_vm(self.conn, name, self.timeouts.vm_start,
                                                      correlation_id=self.run_id,
                                                      timing=self.timing).summary,
                       {"why": "an interrupted run stopped it"})

    def result(self, seconds: float = 0.0) -> ApplyResult:
        return ApplyResult(self.run_id, tuple(self._steps), dict(self._degraded), self._halted,
                           seconds)

    # ---- host cycles -------------------------------------------------------------------------

    def _host_cycle(self, unit: Unit) -> None:
        found = unit.cycle
        assert found is not None
        cycle_index, cycle = found
        name = unit.name
        if not all(self._allowed(a) for _, a in unit.actions):
            for index, action in unit.actions:
                self._pending(index, action)
            return
        if self._stop_now():
            self._not_started(unit)
            return
        host = self.reader.host(name)
        if host is None:
            self._fail_unit(unit, f"host {name} no longer exists on the engine")
            return
        cluster = self.reader.cluster_hosts(host.cluster)
        with self._budget_lock:
            verdict = self.budget.check(host, cluster, self._in_flight)
            if verdict.allowed:
                self._in_flight.add(name)
        if not verdict.allowed:
            self._halt(verdict.message)
            self._not_started(unit)
            raise _Halt
        if self._stop_now():
            # The last point before this cycle takes anything down (its VM stops, then the
            # host); from here on it runs to its end.
            self._not_started(unit)
            return
        was_up = host.status == "up"
        stops = [(i, a) for i, a in unit.actions if isinstance(a, StopVm)]
        config = [(i, a) for i, a in unit.actions
                  if not isinstance(a, (StopVm, HostCycle))]
        stopped: list[str] = []
        for index, stop in stops:
            if not self._action_step(index, stop):
                self._abort_cycle(unit, name, was_up, stopped, f"stopping {stop.object_name} "
                                                               "failed")
            stopped.append(stop.object_name)
        key = f"host:{name}"
        ok, _, err = self._step(f"{cycle_index}.deactivate", key, "deactivate",
                                cycle.disruption.value,
                                lambda: ops.deactivate_host(
                                    self.conn, name, self.timeouts.deactivate,
                                    reason="gpu-reconciler host cycle",
                                    correlation_id=self.run_id, timing=self.timing).summary)
        if not ok:
            self._abort_cycle(unit, name, was_up, stopped, f"deactivation failed: {err}")
        # Host files first, then the engine's fields: a host we could not write to keeps its
        # engine record unchanged.
        for index, action in sorted(config, key=lambda ia: _CONFIG_ORDER.get(ia[1].kind, 9)):
            if not self._action_step(index, action):
                self._abort_cycle(unit, name, was_up, stopped, f"{action.kind} failed")
        ok, _, err = self._step(f"{cycle_index}.install", key, "install", cycle.disruption.value,
                                lambda: ops.install_host(
                                    self.conn, name, reboot=True, activate=False,
                                    timeout=self.timeouts.install, correlation_id=self.run_id,
                                    timing=self.timing).summary)
        if not ok:
            self._after_reboot_failure(unit, name, was_up, stopped, "install", err)
        ok, _, err = self._step(f"{cycle_index}.activate", key, "activate",
                                cycle.disruption.value,
                                lambda: ops.activate_host(
                                    self.conn, name, self.timeouts.activate,
                                    correlation_id=self.run_id, timing=self.timing).summary)
        if not ok:
            self._after_reboot_failure(unit, name, was_up, stopped, "activate", err)
        checks = list(cycle.verify)
        if self.vgpu_required(name):
            checks += [Verification(key, "probe.vgpu_manager_service", "eq", "active"),
                       Verification(key, "probe.loaded_modules", "contains", VGPU_MODULE)]
        ok, _, err = self._step(str(cycle_index), key, cycle.kind, cycle.disruption.value,
                                lambda: "host back up" + self._verify(checks),
                                {"description": cycle.description, "checks": len(checks)})
        if not ok:
            self._halt(f"host {name} came back up but did not verify: {err}")
            raise _Halt

    def _fail_unit(self, unit: Unit, why: str) -> None:
        for index, action in unit.actions:
            self._record(StepRecord(str(index), action.target, action.kind,
                                    action.disruption.value, FAILED, why))
        self._halt(why)
        raise _Halt

    def _abort_cycle(self, unit: Unit, name: str, was_up: bool, stopped: list[str],
                     why: str) -> None:
        """A cycle failed before the reboot: put a healthy host back as it was, then halt."""
        host = self._safe_host(name)
        status = host.status if host is not None else "unknown"
        if was_up and status in _HEALTHY_DOWN:
            restored, _, err = self._step(f"{unit.actions[-1][0]}.restore", unit.target,
                                          "activate", Disruption.HOST_REBOOT.value,
                                          lambda: ops.activate_host(
                                              self.conn, name, self.timeouts.activate,
                                              correlation_id=self.run_id,
                                              timing=self.timing).summary,
                                          {"why": why})
            if restored:
                self._restart(stopped)
            else:
                self._degraded[name] = f"{why}; activating it again failed: {err}"
        elif was_up and status != "up":
            self._degraded[name] = f"{why}; host is {status}"
        self._halt(f"host {name}: {why}")
        self._rest_not_started(unit)
        raise _Halt

    def _halt(self, why: str) -> None:
        with self._budget_lock:
            if self._halted is None:      # the first reason is the one to report
                self._halted = why

    def _rest_not_started(self, unit: Unit) -> None:
        done = {s.step_id for s in self._steps}
        for index, action in unit.actions:
            if str(index) not in done:
                self._record(StepRecord(str(index), action.target, action.kind,
                                        action.disruption.value, NOT_STARTED,
                                        f"not started: {self._halted}"))

    def _after_reboot_failure(self, unit: Unit, name: str, was_up: bool, stopped: list[str],
                              stage: str, err: ReconcilerError | None) -> None:
        host = self._safe_host(name)
        status = host.status if host is not None else "unknown"
        if isinstance(err, (ops.HostDidNotReturn, ops.InstallFailed, ops.ActivationFailed)) \
                or status not in ("up", "maintenance"):
            self._degraded[name] = f"{stage}: {err} (status {status})"
            self._halt(f"host {name} is degraded after {stage}; rollout halted")
            self._rest_not_started(unit)
            raise _Halt
        self._abort_cycle(unit, name, was_up, stopped, f"{stage} failed: {err}")

    def _safe_host(self, name: str) -> Any:
        try:
            return self.reader.host(name)
        except ReconcilerError as err:
            log.warning("apply.host_unreadable", host=name, error=str(err))
            return None

    def _restart(self, vms: Sequence[str]) -> None:
        for vm in vms:
            self._step(f"restore.{vm}", f"vm:{vm}", "start-vm", Disruption.VM_RESTART.value,
                       lambda: ops.start_vm(self.conn, vm, self.timeouts.vm_start,
                                                  correlation_id=self.run_id,
                                                  timing=self.timing).summary,
                       {"why": "its host's cycle was abandoned"})

    # ---- one action -> one operation ---------------------------------------------------------

    def _transport(self, action: Action) -> Transport:
        transport = self.transports.get(action.object_name)
        if transport is None:
            raise ApplyError(f"{action.target}: {action.kind} needs host access, and the spec "
                             "gives no way to reach this host (hostAccess)")
        return transport

    def _perform(self, action: Action) -> str:
        kw: dict[str, Any] = {"correlation_id": self.run_id, "timing": self.timing}
        name = action.object_name
        if isinstance(action, WriteModprobeFile):
            path = PurePosixPath(action.path)
            if str(path) != MODPROBE_PATH:
                raise ApplyError(f"{action.target}: refusing to write {action.path}: only our "
                                 f"own {MODPROBE_PATH} is ever written")
            result = host_ops.write_modprobe_file(self._transport(action), path.stem,
                                                  action.content, backup=True)
            if not result.changed:
                return f"{result.path} already up to date"
            return f"{result.path} written" + (f" (backup {result.backup_path})"
                                               if result.backup_path else "")
        if isinstance(action, RegenerateInitramfs):
            host_ops.regenerate_initramfs(self._transport(action))
            return "initramfs regenerated"
        if isinstance(action, SetKernelCmdline):
            return ops.set_kernel_cmdline(self.conn, name, action.cmdline, **kw).summary
        if isinstance(action, SetVgpuPlacement):
            return ops.set_vgpu_placement(self.conn, name, action.placement, **kw).summary
        if isinstance(action, PinVm):
            return ops.pin_vm(self.conn, name, action.host, **kw).summary
        if isinstance(action, AttachHostDevice):
            return ops.attach_host_device(self.conn, name, action.device, **kw).summary
        if isinstance(action, DetachHostDevice):
            return ops.detach_host_device(self.conn, name, action.device, **kw).summary
        if isinstance(action, AddMediatedDevice):
            return ops.add_mediated_device(self.conn, name, action.mdev_type, action.nodisplay,
                                           action.driver_params, instances=action.instance,
                                           **kw).summary
        if isinstance(action, RemoveMediatedDevice):
            return ops.remove_mediated_device(self.conn, name, action.device_id, **kw).summary
        if isinstance(action, UpdateMediatedDevice):
            return ops.update_mediated_device(self.conn, name, action.device_id,
                                              action.mdev_type, action.nodisplay,
                                              action.driver_params, **kw).summary
        if isinstance(action, SetConsoleVnc):
            if action.remove_spice:
                raise ApplyError(f"{action.target}: removing the SPICE console is not supported")
            return ops.add_vnc_console(self.conn, name, **kw).summary
        if isinstance(action, StopVm):
            # The planner only stops VMs whose spec allows it; a saved plan is checked again
            # against the spec it names, so an edited file cannot stop a VM the spec protects.
            policy = self.restart_policy(name)
            if policy is not None and policy != "allowed":
                raise ApplyError(f"{action.target}: refusing to stop the VM: its spec says "
                                 f"restart: {policy}")
            return ops.shutdown_vm(self.conn, name, self.timeouts.vm_shutdown,
                                   stop_timeout=self.timeouts.vm_stop, **kw).summary
        if isinstance(action, StartVm):
            return ops.start_vm(self.conn, name, self.timeouts.vm_start, **kw).summary
        raise ApplyError(f"{action.target}: no executor step for action {action.kind!r}")


# Within a cycle: host files, then the initramfs, then the engine's fields.
_CONFIG_ORDER = {"write-modprobe-file": 0, "regenerate-initramfs": 1, "set-kernel-cmdline": 2,
                 "set-vgpu-placement": 3}


__all__ = ["ApplyResult", "Executor", "StepRecord", "Timeouts", "VGPU_MODULE"]
