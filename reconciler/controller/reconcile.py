"""One reconcile pass, and nothing about when the next one runs.

`PassRunner.run_pass(reasons, may_apply)` loads the spec (a bad edit is reported and the last good
spec stays in force), observes the fleet afresh through the engine endpoint, plans, and in apply
mode converges within --max-disruption through the apply runner; it records drift (store history,
/status, /metrics, notifications) and returns a `PassOutcome`. It never sleeps, never queues and
keeps no backoff: the loop (`controller/loop.py`) reads the outcome and decides, as
controller-runtime's reconcile handler does with a `Result`.

An apply pass observes and plans again inside the apply runner, after taking the engine's apply
lock: the plan shown to the lock holder must be made from what the fleet is once nobody else can
change it, so the pass's own plan only decides whether an apply is worth starting.
"""
from __future__ import annotations

import dataclasses
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from reconciler import drift as drift_report
from reconciler import log
from reconciler.access.endpoint import EngineEndpoint, OpenEndpoint, open_real_endpoint
from reconciler.apply.progress import StepEvent
from reconciler.controller.devicepoll import DevicePoller, PollPacer
from reconciler.controller.gitsource import GitSource
from reconciler.controller.hostsweep import HostSweep
from reconciler.controller.metrics import ControllerMetrics, PassResult
from reconciler.controller.notify import WebhookNotifier
from reconciler.controller.server import ControllerState
from reconciler.controller.specsource import SpecSource
from reconciler.controller.vmrefresh import refresh_vms, refreshable
from reconciler.controller.triggers import EventPoller, WorkQueue
from reconciler.errors import EngineError, LockedError, ReconcilerError, SpecError
from reconciler.fleetmap import build_fleet_map
from reconciler.observe.session import FleetSession, open_fleet
from reconciler.plan import plan as make_plan
from reconciler.plan.actions import Action
from reconciler.plan.result import Plan
from reconciler.spec.model import DesiredState
from reconciler.store import DriftChange, is_postgres_url, open_store
from reconciler.store.db import default_state_path

Mode = Literal["observe", "apply"]
# Trigger reasons that come from watching the engine only: hosts raise none of them, so a pass
# they alone start keeps the last probe facts instead of probing every host again.
ENGINE_WATCHERS = frozenset({"engine-event", "device-poll"})
# What an apply attempt came to: converged within policy, or worth another try later.
ApplyVerdict = Literal["converged", "retry"]


class ApplyAttemptFailed(ReconcilerError):
    """The apply of a pass raised; the message is the apply's own."""

    def __init__(self, cause: ReconcilerError) -> None:
        super().__init__(str(cause))
        self.cause = cause


@dataclass(frozen=True)
class PassOutcome:
    """What one pass found and did; the loop decides what happens next from it."""

    result: PassResult
    plan: Plan | None = None
    error: str | None = None
    applied: bool = False
    apply: ApplyVerdict | None = None        # None: no apply was attempted
    drift: tuple[Any, ...] = ()
    since: dict[tuple[str, str, str], datetime] = field(default_factory=dict)


class _ApplyProgress:
    """The executor's progress hook: feeds /status and /metrics and learns the apply's
    correlation id (its run id). Host cycles of one wave call it from their own threads."""

    def __init__(self, runner: PassRunner) -> None:
        self.r = runner
        self.run_id: str | None = None
        self.done = 0
        self.steps_total: int | None = None
        self._step: str | None = None
        self._lock = threading.Lock()

    def _learn(self, run_id: str) -> None:
        with self._lock:
            if self.run_id is not None:
                return
            self.run_id = run_id
        self.r.own_correlation_ids.add(run_id)
        self.r.state.apply_started(run_id)

    def run_started(self, run_id: str, steps_total: int) -> None:
        """The plan's step count, once the executor starts on it (after any recovery steps,
        which count as done)."""
        self._learn(run_id)
        with self._lock:
            done, step = self.done, self._step
            self.steps_total = done + steps_total
        self.r.state.apply_started(run_id, done + steps_total)
        if step is not None:
            self.r.state.apply_step(run_id, step, done)

    def step_started(self, event: StepEvent) -> None:
        self._learn(event.run_id)
        with self._lock:
            done = self.done
            self._step = f"{event.target} {event.action}"
        self.r.state.apply_step(event.run_id, f"{event.target} {event.action}", done)
        self.r.state.beat()

    def step_finished(self, event: StepEvent, outcome: str, seconds: float,
                      message: str | None = None) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        self.r.metrics.apply_step({"ok": "ok", "failed": "failed"}.get(outcome, "skipped"))
        self.r.state.apply_step(event.run_id, f"{event.target} {event.action}", done)
        self.r.state.beat()
        self.r.log.info("apply.step", run_id=event.run_id, target=event.target,
                        action=event.action, outcome=outcome, seconds=round(seconds, 3),
                        message=message)

    def message(self, text: str) -> None:
        self.r.log.info("apply.message", message=text)

    def close(self) -> None:
        pass


class _EngineLink:
    """The open endpoint and fleet session plus the triggers that watch this engine between
    passes, each on its own connection: the event poller, the device poller, the host sweep."""

    def __init__(self, desired: DesiredState, endpoint: EngineEndpoint, fleet: FleetSession,
                 stack: ExitStack, poller: EventPoller | None,
                 devices: DevicePoller | None = None, sweep: HostSweep | None = None) -> None:
        self.engine = desired.engine
        self.endpoint = endpoint
        self.fleet = fleet
        self.stack = stack
        self.poller = poller
        self.devices = devices
        self.sweep = sweep

    def close(self) -> None:
        for trigger in (self.poller, self.devices, self.sweep):
            if trigger is not None:
                trigger.stop()
        self.stack.close()


class PassRunner:
    """Runs reconcile passes for one controller; holds the engine link between passes."""

    def __init__(self, config: Any, queue: WorkQueue, state: ControllerState,
                 metrics: ControllerMetrics, notifier: WebhookNotifier | None,
                 stop: threading.Event, open_endpoint: OpenEndpoint = open_real_endpoint, *,
                 spec: SpecSource | None = None, engine: str | None = None,
                 halt: threading.Event | None = None,
                 leading: Callable[[], bool] = lambda: True,
                 lease_unlock: Callable[[Any, str], str | None] | None = None) -> None:
        self.config = config
        self.queue = queue            # only handed to the event poller, which feeds it
        self.state = state
        self.metrics = metrics
        self.notifier = notifier
        self.log = log.get_logger("controller")
        self.store = open_store(config.state)
        self.own_correlation_ids: set[str] = set()
        self._stop = stop
        # Set by stop() and by a lost lease: the apply's stop event (it ends at a safe point).
        self._halt = halt if halt is not None else stop
        self._leading = leading
        self._lease_unlock = lease_unlock
        self._open_endpoint = open_endpoint
        self._desired: DesiredState | None = None
        self._engine_key: str | None = None
        self._link: _EngineLink | None = None
        self.engine = engine
        self.spec = spec if spec is not None else SpecSource.from_config(
            config, local_folder(config.state))
        # Probe facts of the last pass that probed: passes that only the engine's own watchers
        # triggered (events, device polls) reuse them instead of probing every host again.
        self._probes: tuple[Any, ...] | None = None
        # The last observation, for passes that re-read only the VMs the device poll saw change.
        self._observed: Any = None

    @property
    def git(self) -> GitSource | None:
        return self.spec.git

    @property
    def linked(self) -> bool:
        return self._link is not None

    def spec_paths(self) -> list[str]:
        return self.spec.spec_paths()

    def close(self) -> None:
        self.close_link()
        self.store.close()

    # ---- one pass -----------------------------------------------------------------------------

    def run_pass(self, reasons: frozenset[str] | set[str] = frozenset({"manual"}),
                 may_apply: bool = True) -> PassOutcome:
        """One pass; `may_apply` False defers an apply (the loop is backing off applies)."""
        trigger = ",".join(sorted(reasons))
        started = time.monotonic()
        self.state.pass_started()
        self.log.info("controller.pass_started", trigger=trigger)
        try:
            outcome = self._pass(may_apply, frozenset(reasons))
        except ReconcilerError as exc:
            failed_apply = isinstance(exc, ApplyAttemptFailed)
            cause = exc.cause if isinstance(exc, ApplyAttemptFailed) else exc
            outcome = PassOutcome("error", error=str(exc),
                                  apply="retry" if failed_apply else None)
            if isinstance(cause, EngineError):
                # The client already retried: this is one engine request that finally failed.
                self.metrics.engine_requests_add(0, 1)
            self.close_link()          # reconnect next time: the session may be broken
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one pass
            self.log.exception("controller.pass_crashed")
            outcome = PassOutcome("error", error=f"{type(exc).__name__}: {exc}")
            self.close_link()
        duration = time.monotonic() - started
        self.metrics.record_pass(outcome.result, duration)
        if outcome.plan is None:
            self.state.pass_finished(outcome.result, duration, outcome.error, trigger=trigger)
        else:
            self.state.pass_finished(outcome.result, duration, outcome.error,
                                     drift=outcome.drift, first_seen=outcome.since,
                                     trigger=trigger)
        self.log.info("controller.pass_finished", result=outcome.result,
                      seconds=round(duration, 3), error=outcome.error, trigger=trigger)
        return outcome

    def _pass(self, may_apply: bool, reasons: frozenset[str] = frozenset()) -> PassOutcome:
        desired = self._load_spec()
        if desired is None:
            return PassOutcome("error", error="no valid spec has been loaded yet")
        link = self._open_link(desired)
        key = link.endpoint.key
        run_id = self.store.start_run("controller-pass", key,
                                      spec_revision=self.state.snapshot()["revision"])
        try:
            reuse = bool(reasons) and reasons <= ENGINE_WATCHERS and self._probes is not None
            changed = link.devices.take_changed() if link.devices is not None else frozenset()
            only = changed if reasons == {"device-poll"} and refreshable(changed) else None
            the_plan, not_seen = self._observe_and_plan(link, desired, key, reuse_probes=reuse,
                                                        only_vms=only)
            applied, verdict = False, None
            if self.config.mode == "apply" and (self._allowed(the_plan) or self._left_over(key)) \
                    and not self.stopping and not self._halt.is_set() and self._leading():
                if may_apply:
                    after, verdict = self._apply(desired, link.endpoint)
                    if after is not None:
                        the_plan, applied = after, True
                else:
                    self.log.info("controller.apply_deferred",
                                  why="backing off after an apply that did not converge")
            drift_report.record_converged(self.store, key, the_plan, run_id, not_seen)
            result, records, since = self._publish(key, the_plan, not_seen)
        except BaseException as exc:
            self.store.finish_run(run_id, "failed", str(exc) or type(exc).__name__)
            raise
        self.store.finish_run(run_id, result, the_plan.summary.line())
        self.store.prune_runs(key, "controller-pass", self.config.keep_passes)
        return PassOutcome(result, the_plan, applied=applied, apply=verdict,
                           drift=tuple(records), since=since)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def resume(self) -> None:
        """This replica just took the engine over: its next pass in apply mode runs the apply
        runner even when nothing is to be done, so that what a dead leader left in the journal
        (a step begun and never ended, a run never closed) is reported and closed once."""
        self._resume = True

    _resume = False

    def _left_over(self, key: str) -> bool:
        if not self._resume:
            return False
        self._resume = False
        return bool(self.store.unfinished_steps(key)) or any(
            r.kind == "apply" and r.outcome is None for r in self.store.runs(20, key))

    # ---- spec --------------------------------------------------------------------------------

    def load_spec(self) -> DesiredState | None:
        """Load the spec (a standby replica does, to be ready to take over)."""
        return self._load_spec()

    def _load_spec(self) -> DesiredState | None:
        try:
            loaded = self.spec.load()
            desired = loaded.engine(self.engine)
            revision = loaded.revision
        except SpecError as err:
            for issue in err.issues:
                self.log.error("controller.spec_invalid", issue=issue.format())
            self._spec_failed("; ".join(i.format() for i in err.issues[:5])
                              + (f" (and {len(err.issues) - 5} more)"
                                 if len(err.issues) > 5 else ""))
            return self._desired
        except ReconcilerError as err:
            self.log.error("controller.spec_not_loaded", error=str(err))
            self._spec_failed(str(err))
            return self._desired
        if self._desired is None or revision != self.state.snapshot()["revision"]:
            self.log.info("controller.spec_loaded", revision=revision, files=len(desired.sources))
        self._desired = desired
        self.state.spec_loaded(revision)
        return desired

    def _spec_failed(self, message: str) -> None:
        kept = self.state.snapshot()["revision"]
        if kept:
            message += f" (revision {kept} stays in force)"
        self.state.spec_failed(message)

    # ---- engine ------------------------------------------------------------------------------

    def _open_link(self, desired: DesiredState) -> _EngineLink:
        if self._link is not None and self._link.engine == desired.engine:
            self._link.fleet.desired = desired
            return self._link
        self.close_link()
        stack = ExitStack()
        try:
            endpoint = stack.enter_context(self._open_endpoint(desired))
            fleet = stack.enter_context(open_fleet(desired, endpoint))
        except BaseException:
            stack.close()
            raise
        poller = EventPoller(self.queue, lambda: endpoint.connect(connections=1),
                             self.config.events_interval,
                             ours=lambda: tuple(self.own_correlation_ids),
                             on_request=lambda failed: self.metrics.engine_request(failed))
        poller.start()
        devices: DevicePoller | None = None
        if self.config.device_poll > 0:
            devices = DevicePoller(
                self.queue, lambda: endpoint.connect(connections=1),
                lambda: self._desired or desired,
                PollPacer(minimum=self.config.device_poll),
                on_request=lambda failed: self.metrics.engine_request(failed),
                on_cost=self.metrics.device_poll)
            devices.start()
        sweep: HostSweep | None = None
        if self.config.probe and self.config.host_sweep > 0:
            sweep = HostSweep(self.queue, _sweep_probe(desired), self.config.host_sweep)
            sweep.start()
        self._link = _EngineLink(desired, endpoint, fleet, stack, poller, devices, sweep)
        self._engine_key = endpoint.key
        self.state.engine = self._engine_key
        return self._link

    def close_link(self) -> None:
        link, self._link = self._link, None
        self._observed = None           # a new session observes everything afresh
        if link is not None:
            try:
                link.close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the real outcome
                self.log.debug("controller.link_close_failed", error=str(exc))

    def _observe_and_plan(self, link: _EngineLink, desired: DesiredState, key: str,
                          reuse_probes: bool = False, only_vms: frozenset[str] | None = None
                          ) -> tuple[Plan, frozenset[str]]:
        """The plan, and the hosts whose probe failed (their host-level drift is unknown).

        `reuse_probes`: the engine's watchers alone triggered this pass, and hosts raise no
        engine event: keep the last pass's probe facts (the host sweep watches the hosts).
        `only_vms`: the device poll alone triggered it; re-read just those VMs and plan against
        the last full observation (vmrefresh.py)."""
        before = link.fleet.request_count
        if only_vms and self._observed is not None:
            try:
                observed = refresh_vms(link.fleet.connection, self._observed, only_vms,
                                       timing=link.endpoint.timing)
            finally:
                self.metrics.engine_requests_add(link.fleet.request_count - before)
            self._observed = observed
            self.log.info("controller.vms_refreshed", vms=sorted(only_vms)[:20],
                          requests=link.fleet.request_count - before)
            the_plan = make_plan(desired, observed, self.store.applied(key))
            self._publish_fleet(observed, the_plan, desired)
            return the_plan, drift_report.unobserved(observed)
        probe = self.config.probe and not reuse_probes
        try:
            observed = link.fleet.observe(probe=probe)
        finally:
            self.metrics.engine_requests_add(link.fleet.request_count - before)
        if self.config.probe and reuse_probes and self._probes is not None:
            observed = dataclasses.replace(observed, probes=self._probes)
        elif probe:
            self._probes = observed.probes
            if link.sweep is not None:
                link.sweep.update(link.fleet.transports(), observed.probes)
        self._observed = observed
        the_plan = make_plan(desired, observed, self.store.applied(key))
        self._publish_fleet(observed, the_plan, desired)
        return the_plan, drift_report.unobserved(observed)

    def _publish_fleet(self, observed: Any, the_plan: Plan, desired: DesiredState) -> None:
        """The fleet GPU map of this observation, for `/` and /metrics."""
        at = datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        fleet_map = build_fleet_map(observed, the_plan, desired, generated_at=at)
        self.state.fleet.update(fleet_map)
        self.metrics.fleet.update(fleet_map)

    # ---- apply -------------------------------------------------------------------------------

    def _allowed(self, the_plan: Plan) -> list[Action]:
        return [a for a in the_plan.actions if a.disruption <= self.config.max_disruption]

    def _apply(self, desired: DesiredState, endpoint: EngineEndpoint
               ) -> tuple[Plan | None, ApplyVerdict]:
        """Run one apply through the apply runner: the plan it made afterwards, and whether the
        fleet converged within policy or the loop should try again later."""
        from reconciler.apply.runner import ApplyOptions, execute

        progress = _ApplyProgress(self)
        revision = self.state.snapshot()["revision"]
        # stop() (SIGTERM) sets this event: the executor then ends the run at its next safe
        # point (no host out of service, no VM stopped by it) and closes it as "stopped".
        # A lease taken over from a replica that stopped renewing it proves that replica no
        # longer acts: the apply lock it left (same run, other machine) may be taken over.
        unlock = self._lease_unlock(self.store, endpoint.key) if self._lease_unlock else None
        options = ApplyOptions(yes=True, max_disruption=self.config.max_disruption,
                               state=self.config.state, probe=self.config.probe,
                               stop=self._halt, spec_revision=revision, force_unlock=unlock,
                               lock_ttl=max(30.0, 3 * self.config.lease_ttl))
        self._notify("apply.started", {"max_disruption": self.config.max_disruption.value,
                                       "revision": revision})
        out = io.StringIO()
        try:
            with self._beating():
                outcome = execute(desired, options, endpoint, out=out, progress=progress)
        except LockedError as err:
            self.log.warning("controller.apply_locked", error=str(err))
            # Shown on /status: the reason the controller is not converging (e.g. a lock left
            # by a crashed holder that needs --force-unlock).
            self.state.apply_finished(None, "locked", str(err), revision)
            return None, "retry"
        except ReconcilerError as err:
            if progress.run_id:
                self.state.apply_finished(progress.run_id, "failed", str(err), revision)
            self._notify("apply.failed", {"run_id": progress.run_id, "error": str(err),
                                          "revision": revision})
            raise ApplyAttemptFailed(err) from err
        finally:
            self.log.debug("controller.apply_output", text=out.getvalue())
        run_id = outcome.run_id or progress.run_id or "?"
        after = outcome.after
        self.metrics.engine_requests_add(outcome.engine_requests, outcome.engine_errors)
        if outcome.result is not None and outcome.result.stopped:
            message = (f"stopped by SIGTERM at a safe point: "
                       f"{len(outcome.result.by_outcome('ok'))} step(s) ok, "
                       f"{len(outcome.result.by_outcome('not-started'))} not started; the next "
                       "pass re-plans from the fleet")
            self.state.apply_finished(run_id, "stopped", message, revision)
            self._notify("apply.failed", {"run_id": run_id, "outcome": "stopped",
                                          "message": message, "revision": revision})
            return after, "retry"
        result = outcome.result
        ok = result is None or result.ok
        message = (f"{len(result.by_outcome('ok'))} step(s) ok, {len(result.failed)} failed, "
                   f"{len(result.pending)} pending" if result is not None else "nothing to do")
        if result is not None and result.halted:
            message += f"; halted: {result.halted}"
        self.state.apply_finished(run_id, "ok" if ok else "failed", message, revision)
        self._notify("apply.finished" if ok else "apply.failed",
                     {"run_id": run_id, "outcome": "ok" if ok else "failed", "message": message,
                      "revision": revision})
        converged = ok and after is not None and not self._allowed(after)
        return after, "converged" if converged else "retry"

    @contextmanager
    def _beating(self) -> Iterator[None]:
        """Keep /healthz green while one long step (a host reinstall) runs: the executor's own
        timeouts bound every step, so a live apply is never mistaken for a stalled loop."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self.config.idle_beat):
                self.state.beat()
        thread = threading.Thread(target=beat, name="apply-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    # ---- results -----------------------------------------------------------------------------

    def _publish(self, key: str, the_plan: Plan, not_seen: frozenset[str] = frozenset()
                 ) -> tuple[PassResult, list[Any], dict[tuple[str, str, str], datetime]]:
        # Hosts that could not be probed keep the drift they had (not resolved, not re-new).
        kept = drift_report.carried(self.store, key, the_plan, not_seen)
        change, since = drift_report.record(self.store, key, the_plan, not_seen=not_seen)
        records = drift_report.records(the_plan) + kept
        out_of_sync = any(r.cls in drift_report.OUT_OF_SYNC for r in records)
        result: PassResult = "drift" if out_of_sync or the_plan.has_changes else "ok"
        self.metrics.set_drift(_counts(records))
        self._notify_drift(change)
        for item in change.new:
            self.log.info("drift.new", key=item.key, cls=item.cls, message=item.message)
        for item in change.resolved:
            self.log.info("drift.resolved", key=item.key, cls=item.cls, message=item.message)
        return result, records, since

    def _notify_drift(self, change: DriftChange) -> None:
        for item in change.new:
            self._notify("drift.new", {"key": item.key, "class": item.cls,
                                       "message": item.message})
        for item in change.resolved:
            self._notify("drift.resolved", {"key": item.key, "class": item.cls,
                                            "message": item.message})

    def _notify(self, event: Any, details: dict[str, Any]) -> None:
        if self.notifier is not None:
            self.notifier.notify(event, self._engine_key or "?", details)


def _sweep_probe(desired: DesiredState) -> Callable[[Any, str], Any]:
    """One host's probe as the host sweep runs it, with the spec's timeout."""
    from reconciler.observe.probe import probe_host

    ssh = desired.host_access.ssh
    timeout = ssh.timeout_seconds if ssh else 30.0

    def probe(transport: Any, host: str) -> Any:
        return probe_host(transport, host, timeout)
    return probe


def local_folder(state: Path | str) -> Path:
    """Where this process keeps local files (the git clone): next to an SQLite state file, or in
    the default state folder when the store is a PostgreSQL database."""
    if is_postgres_url(state):
        return default_state_path().parent
    return Path(state).parent


def _counts(records: Sequence[Any]) -> dict[str, int]:
    counts = {cls: 0 for cls in drift_report.CLASS_ORDER}
    for r in records:
        counts[r.cls] = counts.get(r.cls, 0) + 1
    return counts


__all__ = ["ApplyAttemptFailed", "ApplyVerdict", "Mode", "PassOutcome", "PassRunner"]
