"""The controller loop: level-triggered reconciling of the spec against the fleet.

Triggers (spec files, a git ref, engine events, the resync timer) only put reasons in a coalescing
queue. Each pass takes everything queued as one piece of work and does the same thing whatever the
reasons: load the spec (a bad edit is reported and the last good spec stays in force), observe the
fleet afresh, plan, record drift (store history, /status, /metrics, notifications) and, in apply
mode, converge within --max-disruption through the apply runner (which holds the store's lock).
A failing pass is retried with capped exponential backoff; triggers arriving meanwhile wait (except
a new spec, which may be the fix), so there is never a tight loop. `stop()` (SIGTERM) sets the
apply's stop event: the executor finishes what must not be split (a host cycle, a VM stopped for a
change), starts nothing more and closes the run as stopped.
"""
from __future__ import annotations

import hashlib
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from reconciler import drift as drift_report
from reconciler import log
from reconciler.controller.gitsource import GitPoller, GitSource, check_subpath
from reconciler.controller.metrics import ControllerMetrics, PassResult
from reconciler.controller.notify import WebhookNotifier
from reconciler.controller.server import ControllerState
from reconciler.controller.triggers import EventPoller, ResyncTimer, SpecWatcher, WorkQueue
from reconciler.errors import EngineError, LockedError, ReconcilerError, SpecError
from reconciler.plan import plan as make_plan
from reconciler.plan.actions import Disruption
from reconciler.plan.result import Plan
from reconciler.spec.model import DesiredState, EngineSpec
from reconciler.store import DriftChange, Store

Mode = Literal["observe", "apply"]
# Trigger reasons that bring a new spec: they end a backoff wait (a spec edit is at most one pass
# per debounced change, so this cannot become a tight loop).
NEW_SPEC = frozenset({"spec", "git"})


@dataclass(frozen=True)
class ControllerConfig:
    """Everything `reconcile controller` was asked to do."""

    spec_paths: tuple[str, ...]
    state: Path
    mode: Mode = "observe"
    max_disruption: Disruption = Disruption.NONE
    resync: float = 300.0
    events_interval: float = 1.0
    git_url: str | None = None
    git_ref: str = "main"
    git_poll: float = 60.0
    probe: bool = True
    debounce_ms: int = 200
    backoff_initial: float = 1.0
    backoff_cap: float = 300.0
    idle_beat: float = 5.0
    keep_passes: int = 1000         # controller-pass runs kept in the store's history
    hold_off_cap: float = 60.0      # longest pause after a good pass (it lasts as long as the pass)


@dataclass(frozen=True)
class PassOutcome:
    result: PassResult
    plan: Plan | None = None
    error: str | None = None
    applied: bool = False
    drift: tuple[Any, ...] = ()
    since: dict[tuple[str, str, str], datetime] = field(default_factory=dict)


class Backoff:
    """Capped exponential delay after consecutive failures: initial * 2**(n-1), at most cap."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial = initial
        self.cap = cap
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return self.delay()

    def delay(self) -> float:
        if self.failures == 0:
            return 0.0
        return float(min(self.cap, self.initial * 2 ** (self.failures - 1)))

    def reset(self) -> None:
        self.failures = 0


def spec_revision(sources: Sequence[str]) -> str:
    """A digest of the spec files' contents: what /status shows for a folder (no git)."""
    digest = hashlib.sha256()
    for src in sorted(sources):
        digest.update(src.encode() + b"\0")
        try:
            digest.update(Path(src).read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return "sha256:" + digest.hexdigest()[:16]


class _ApplyProgress:
    """The executor's progress hook: feeds /status and /metrics and learns the apply's
    correlation id (its run id). Host cycles of one wave call it from their own threads."""

    def __init__(self, controller: Controller) -> None:
        self.c = controller
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
        self.c.own_correlation_ids.add(run_id)
        self.c.state.apply_started(run_id)

    def run_started(self, run_id: str, steps_total: int) -> None:
        """The plan's step count, once the executor starts on it (after any recovery steps,
        which count as done)."""
        self._learn(run_id)
        with self._lock:
            done, step = self.done, self._step
            self.steps_total = done + steps_total
        self.c.state.apply_started(run_id, done + steps_total)
        if step is not None:
            self.c.state.apply_step(run_id, step, done)

    def step_started(self, event: Any) -> None:
        self._learn(event.run_id)
        with self._lock:
            done = self.done
            self._step = f"{event.target} {event.action}"
        self.c.state.apply_step(event.run_id, f"{event.target} {event.action}", done)
        self.c.state.beat()

    def step_finished(self, event: Any, outcome: str, seconds: float,
                      message: str | None = None) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        self.c.metrics.apply_step({"ok": "ok", "failed": "failed"}.get(outcome, "skipped"))
        self.c.state.apply_step(event.run_id, f"{event.target} {event.action}", done)
        self.c.state.beat()
        self.c.log.info("apply step", run_id=event.run_id, target=event.target,
                        action=event.action, outcome=outcome, seconds=round(seconds, 3),
                        message=message)

    def message(self, text: str) -> None:
        self.c.log.info("apply", message=text)

    def close(self) -> None:
        pass


class _EngineLink:
    """The open fleet session plus the event poller on its own connection, for one engine."""

    def __init__(self, engine: EngineSpec, fleet: Any, stack: ExitStack,
                 poller: EventPoller | None) -> None:
        self.engine = engine
        self.fleet = fleet
        self.stack = stack
        self.poller = poller

    def close(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        self.stack.close()


class Controller:
    """One controller: `run()` blocks until `stop()`; `run_pass()` is one reconcile pass."""

    def __init__(self, config: ControllerConfig, state: ControllerState | None = None,
                 metrics: ControllerMetrics | None = None,
                 notifier: WebhookNotifier | None = None) -> None:
        self.config = config
        self.state = state or ControllerState(mode=config.mode)
        self.metrics = metrics or ControllerMetrics()
        self.notifier = notifier
        self.queue = WorkQueue()
        self.log = log.get_logger("controller")
        self.store = Store(config.state)
        self.own_correlation_ids: set[str] = set()
        self._stop = threading.Event()
        self._desired: DesiredState | None = None
        self._engine_key: str | None = None
        self._link: _EngineLink | None = None
        self._triggers: list[Any] = []
        self._pass_backoff = Backoff(config.backoff_initial, config.backoff_cap)
        self._apply_backoff = Backoff(max(config.backoff_initial, 5.0), config.backoff_cap)
        self._apply_not_before = 0.0
        self._git: GitSource | None = None
        self._git_sub: PurePosixPath | None = None
        if config.git_url:
            if len(config.spec_paths) != 1:
                raise ReconcilerError("with --git give exactly one SPEC-DIR (a path inside the "
                                      "repository)")
            self._git_sub = check_subpath(config.spec_paths[0])
            workdir = GitSource.default_workdir(config.state.parent, config.git_url)
            self._git = GitSource(config.git_url, config.git_ref, workdir)

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()

    def spec_paths(self) -> list[str]:
        if self._git is not None and self._git_sub is not None:
            return [str(self._git.path(self._git_sub))]
        return list(self.config.spec_paths)

    def start_triggers(self) -> None:
        cfg = self.config
        if self._git is not None:
            self._triggers.append(GitPoller(self.queue, self._git, cfg.git_poll).start())
        else:
            watcher = SpecWatcher(self.queue, cfg.spec_paths, debounce_ms=cfg.debounce_ms)
            self._triggers.append(watcher.start())
        self._triggers.append(ResyncTimer(self.queue, cfg.resync).start())

    def stop_triggers(self) -> None:
        for trigger in self._triggers:
            trigger.stop()
        self._triggers.clear()

    def run(self) -> None:
        """Reconcile until `stop()`; always leaves the triggers and connections closed."""
        self.state.loop_started()
        self.start_triggers()
        self.queue.put("start")
        not_before = 0.0
        try:
            while not self.stopping:
                wait = not_before - time.monotonic()
                if wait > 0:
                    # Backing off, or pausing after a pass: engine events and resyncs keep
                    # queueing (coalesced) without cutting the wait; a new spec is tried at once
                    # (it may be the fix, and an edit is at most one pass per debounced change).
                    if self.queue.wait_for_any(NEW_SPEC, min(wait, self.config.idle_beat)):
                        not_before = 0.0
                    self.state.beat()
                    continue
                reasons = self.queue.get(timeout=self.config.idle_beat)
                self.state.beat()
                if not reasons or self.stopping:
                    continue
                started = time.monotonic()
                outcome = self.run_pass(reasons)
                took = time.monotonic() - started
                if outcome.result == "error":
                    delay = self._pass_backoff.failed()
                    self.log.warning("pass failed; backing off", error=outcome.error,
                                     retry_in=delay, failures=self._pass_backoff.failures)
                    not_before = time.monotonic() + delay
                    self.queue.put("retry")
                else:
                    self._pass_backoff.reset()
                    # A busy engine logs events all the time: without a pause, passes (each a
                    # full observation, host probes included) would run back to back. Waiting
                    # as long as the pass took keeps the controller at most half busy; a spec
                    # change still goes at once.
                    not_before = time.monotonic() + min(took, self.config.hold_off_cap)
        finally:
            self.stop_triggers()
            self._close_link()
            self.state.loop_stopped()
            self.store.close()

    # ---- one pass -----------------------------------------------------------------------------

    def run_pass(self, reasons: frozenset[str] | set[str] = frozenset({"manual"})) -> PassOutcome:
        trigger = ",".join(sorted(reasons))
        started = time.monotonic()
        self.state.pass_started()
        self.log.info("pass started", trigger=trigger)
        try:
            outcome = self._pass(trigger)
        except ReconcilerError as exc:
            outcome = PassOutcome("error", error=str(exc))
            if isinstance(exc, EngineError):
                # The client already retried: this is one engine request that finally failed.
                self.metrics.engine_requests_add(0, 1)
            self._close_link()          # reconnect next time: the session may be broken
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one pass
            self.log.exception("pass crashed")
            outcome = PassOutcome("error", error=f"{type(exc).__name__}: {exc}")
            self._close_link()
        duration = time.monotonic() - started
        self.metrics.record_pass(outcome.result, duration)
        if outcome.plan is None:
            self.state.pass_finished(outcome.result, duration, outcome.error, trigger=trigger)
        else:
            self.state.pass_finished(outcome.result, duration, outcome.error,
                                     drift=outcome.drift, first_seen=outcome.since,
                                     trigger=trigger)
        self.log.info("pass finished", result=outcome.result, seconds=round(duration, 3),
                      error=outcome.error, trigger=trigger)
        return outcome

    def _pass(self, trigger: str) -> PassOutcome:
        desired = self._load_spec()
        if desired is None:
            return PassOutcome("error", error="no valid spec has been loaded yet")
        link = self._open_link(desired)
        key = self._engine_key or drift_report.engine_key(desired)
        run_id = self.store.start_run("controller-pass", key,
                                      spec_revision=self.state.snapshot()["revision"])
        try:
            the_plan, not_seen = self._observe_and_plan(link, desired, key)
            applied = False
            if self.config.mode == "apply" and self._should_apply(the_plan):
                after = self._apply(desired, key)
                if after is not None:
                    the_plan, applied = after, True
            drift_report.record_converged(self.store, key, the_plan, run_id, not_seen)
            result, records, since = self._publish(key, the_plan, not_seen)
        except BaseException as exc:
            self.store.finish_run(run_id, "failed", str(exc) or type(exc).__name__)
            raise
        self.store.finish_run(run_id, result, the_plan.summary.line())
        self.store.prune_runs(key, "controller-pass", self.config.keep_passes)
        return PassOutcome(result, the_plan, applied=applied, drift=tuple(records), since=since)

    # ---- spec --------------------------------------------------------------------------------

    def _load_spec(self) -> DesiredState | None:
        from reconciler.spec import load_desired

        revision: str | None = None
        try:
            if self._git is not None:
                if self._git.fetched is None:
                    self._git.fetch()
                revision = self._git.checkout()
            desired = load_desired(self.spec_paths())
        except SpecError as err:
            for issue in err.issues:
                self.log.error("spec invalid", issue=issue.format())
            self._spec_failed("; ".join(i.format() for i in err.issues[:5])
                              + (f" (and {len(err.issues) - 5} more)"
                                 if len(err.issues) > 5 else ""))
            return self._desired
        except ReconcilerError as err:
            self.log.error("spec not loaded", error=str(err))
            self._spec_failed(str(err))
            return self._desired
        if revision is None:
            revision = spec_revision(desired.sources)
        if self._desired is None or revision != self.state.snapshot()["revision"]:
            self.log.info("spec loaded", revision=revision, files=len(desired.sources))
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
        self._close_link()
        from reconciler.engine.client import connect
        from reconciler.observe.session import open_fleet

        stack = ExitStack()
        try:
            fleet = stack.enter_context(open_fleet(desired))
        except BaseException:
            stack.close()
            raise
        lab = fleet.lab
        engine = desired.engine

        def poller_connection() -> Any:
            if lab is not None:
                return connect(engine, url=lab.url, ca_file=lab.ca_file, username=lab.username,
                               password=lab.password, connections=1)
            return connect(engine, connections=1)

        poller = EventPoller(self.queue, poller_connection, self.config.events_interval,
                             ours=lambda: tuple(self.own_correlation_ids),
                             on_request=lambda failed: self.metrics.engine_request(failed))
        poller.start()
        self._link = _EngineLink(desired.engine, fleet, stack, poller)
        self._engine_key = drift_report.engine_key(desired)
        self.state.engine = self._engine_key
        return self._link

    def _close_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            try:
                link.close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the real outcome
                self.log.debug("closing the engine session failed", error=str(exc))

    def _observe_and_plan(self, link: _EngineLink, desired: DesiredState, key: str
                          ) -> tuple[Plan, frozenset[str]]:
        """The plan, and the hosts whose probe failed (their host-level drift is unknown)."""
        before = link.fleet.request_count
        try:
            observed = link.fleet.observe(probe=self.config.probe)
        finally:
            self.metrics.engine_requests_add(link.fleet.request_count - before)
        return (make_plan(desired, observed, self.store.applied(key)),
                drift_report.unobserved(observed))

    # ---- apply -------------------------------------------------------------------------------

    def _allowed(self, the_plan: Plan) -> list[Any]:
        return [a for a in the_plan.actions if a.disruption <= self.config.max_disruption]

    def _should_apply(self, the_plan: Plan) -> bool:
        if not self._allowed(the_plan) or self.stopping:
            return False
        if time.monotonic() < self._apply_not_before:
            self.log.info("apply deferred (backing off after a failed apply)",
                          retry_in=round(self._apply_not_before - time.monotonic(), 1))
            self.queue.put("apply-retry")
            return False
        return True

    def _apply(self, desired: DesiredState, key: str) -> Plan | None:
        """Run one apply through the apply runner; returns the plan it made afterwards."""
        from reconciler.apply.runner import ApplyOptions, execute

        if self._link is not None and self._link.fleet.lab is not None:
            # The embedded lab is one process-local server: the apply opens its own.
            self._close_link()
        progress = _ApplyProgress(self)
        revision = self.state.snapshot()["revision"]
        # stop() (SIGTERM) sets this event: the executor then ends the run at its next safe
        # point (no host out of service, no VM stopped by it) and closes it as "stopped".
        options = ApplyOptions(yes=True, max_disruption=self.config.max_disruption,
                               state=self.config.state, probe=self.config.probe,
                               stop=self._stop, spec_revision=revision)
        self._notify("apply.started", {"max_disruption": self.config.max_disruption.value,
                                       "revision": revision})
        out = io.StringIO()
        try:
            with self._beating():
                outcome = execute(desired, options, out=out, progress=progress)
        except LockedError as err:
            self.log.warning("apply skipped: the lock is held", error=str(err))
            # Shown on /status: the reason the controller is not converging (e.g. a lock left
            # by a crashed holder that needs --force-unlock).
            self.state.apply_finished(None, "locked", str(err), revision)
            self._apply_not_before = time.monotonic() + self._apply_backoff.failed()
            self.queue.put("apply-retry")
            return None
        except ReconcilerError as err:
            if progress.run_id:
                self.state.apply_finished(progress.run_id, "failed", str(err), revision)
            self._notify("apply.failed", {"run_id": progress.run_id, "error": str(err),
                                          "revision": revision})
            self._apply_not_before = time.monotonic() + self._apply_backoff.failed()
            raise
        finally:
            self.log.debug("apply output", text=out.getvalue())
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
            return after
        progressed = outcome.exit_code == 0 or (after is not None and not self._allowed(after))
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
        if ok and after is not None and not self._allowed(after):
            self._apply_backoff.reset()
            self._apply_not_before = 0.0
        elif not progressed or not ok or (after is not None and self._allowed(after)):
            # Not converged within policy: try again later, never in a tight loop.
            self._apply_not_before = time.monotonic() + self._apply_backoff.failed()
            self.queue.put("apply-retry")
        return after

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
        self._notify_drift(key, change)
        for item in change.new:
            self.log.info("drift new", key=item.key, cls=item.cls, message=item.message)
        for item in change.resolved:
            self.log.info("drift resolved", key=item.key, cls=item.cls, message=item.message)
        return result, records, since

    def _notify_drift(self, key: str, change: DriftChange) -> None:
        for item in change.new:
            self._notify("drift.new", {"key": item.key, "class": item.cls,
                                       "message": item.message})
        for item in change.resolved:
            self._notify("drift.resolved", {"key": item.key, "class": item.cls,
                                            "message": item.message})

    def _notify(self, event: Any, details: dict[str, Any]) -> None:
        if self.notifier is not None:
            self.notifier.notify(event, self._engine_key or "?", details)


def _counts(records: Sequence[Any]) -> dict[str, int]:
    counts = {cls: 0 for cls in drift_report.CLASS_ORDER}
    for r in records:
        counts[r.cls] = counts.get(r.cls, 0) + 1
    return counts


@contextmanager
def running(controller: Controller) -> Iterator[threading.Thread]:
    """Run the controller in a background thread for the `with` block; stop it after."""
    thread = threading.Thread(target=controller.run, name="reconcile-loop", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        controller.stop()
        thread.join()


__all__ = ["Backoff", "Controller", "ControllerConfig", "PassOutcome", "running",
           "spec_revision"]
