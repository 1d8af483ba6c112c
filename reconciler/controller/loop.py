"""The controller loop: level-triggered reconciling of the spec against the fleet.

Triggers (spec files, a git ref, engine events, the resync timer) only put reasons in a coalescing
queue. Each pass takes everything queued as one piece of work and does the same thing whatever the
reasons (`controller/reconcile.py`): load the spec, observe, plan, record drift and, in apply mode,
converge within --max-disruption. The pass returns an outcome; this loop alone queues, sleeps and
backs off, as controller-runtime's reconcile handler does:

- a failed pass is retried with capped exponential backoff; triggers arriving meanwhile wait
  (except a new spec, which may be the fix), so there is never a tight loop;
- a good pass is followed by a pause as long as the pass took (capped), so an engine that logs
  events all the time cannot keep the controller busy;
- an apply that did not converge within policy is tried again after its own backoff; passes
  triggered meanwhile observe and report but do not apply.

`stop()` (SIGTERM) sets the apply's stop event: the executor finishes what must not be split (a
host cycle, a VM stopped for a change), starts nothing more and closes the run as stopped.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from reconciler import log
from reconciler.access.endpoint import OpenEndpoint, open_real_endpoint
from reconciler.controller.gitsource import GitPoller
from reconciler.controller.leadership import EngineLease, LeaseKeeper
from reconciler.controller.metrics import ControllerMetrics
from reconciler.controller.notify import WebhookNotifier
from reconciler.controller.reconcile import Mode, PassOutcome, PassRunner
from reconciler.controller.server import ControllerState
from reconciler.controller.specsource import SpecSource
from reconciler.controller.triggers import ResyncTimer, SpecWatcher, WorkQueue
from reconciler.engine.retry import Backoff
from reconciler.plan.actions import Disruption
from reconciler.spec.revision import spec_revision

# Trigger reasons that bring a new spec: they end a backoff wait (a spec edit is at most one pass
# per debounced change, so this cannot become a tight loop).
NEW_SPEC = frozenset({"spec", "git"})
# Failed applies are retried no sooner than this, whatever the pass backoff says.
MIN_APPLY_BACKOFF = 5.0


@dataclass(frozen=True)
class ControllerConfig:
    """Everything `reconcile controller` was asked to do."""

    spec_paths: tuple[str, ...]
    state: Path | str                  # an SQLite file or a postgresql:// URL
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
    device_poll: float = 1.0        # shortest interval of the device poll (0: off); it adapts
    host_sweep: float = 300.0       # the probe sweep's interval: each host once per interval
    lease_ttl: float = 10.0         # leader lease of each engine: the hand-over time after a kill
    replica: str | None = None      # this replica's id on /status and in the leases


class _Retries:
    """Consecutive failures of one kind and the backoff they have earned."""

    def __init__(self, backoff: Backoff) -> None:
        self.backoff = backoff
        self.failures = 0

    def failed(self) -> float:
        self.failures += 1
        return self.backoff.delay(self.failures)

    def reset(self) -> None:
        self.failures = 0


class Controller:
    """One controller: `run()` blocks until `stop()`; `run_pass()` is one reconcile pass."""

    def __init__(self, config: ControllerConfig, state: ControllerState | None = None,
                 metrics: ControllerMetrics | None = None,
                 notifier: WebhookNotifier | None = None,
                 open_endpoint: OpenEndpoint = open_real_endpoint, *,
                 engine: str | None = None, spec: SpecSource | None = None,
                 keeper: LeaseKeeper | None = None) -> None:
        """`engine`, `spec` and `keeper` are the supervisor's (supervisor.py): which engine of
        the spec this loop reconciles, the spec source every loop shares (its triggers are the
        supervisor's), and the leases that say whether this replica leads the engine. Without
        them the loop reconciles the spec's only engine, always as its leader."""
        self.config = config
        self.state = state or ControllerState(mode=config.mode)
        self.metrics = metrics or ControllerMetrics()
        self.queue = WorkQueue()
        self.log = log.get_logger("controller")
        self._stop = threading.Event()
        self._halt = threading.Event()      # the apply's stop: SIGTERM, or the lease lost
        self.engine = engine
        self.keeper = keeper
        self._own_spec_triggers = spec is None
        self.runner = PassRunner(config, self.queue, self.state, self.metrics, notifier,
                                 self._stop, open_endpoint, spec=spec, engine=engine,
                                 halt=self._halt, leading=self.leading,
                                 lease_unlock=self._lease_unlock)
        self._lease: EngineLease | None = None
        self._triggers: list[Any] = []
        self.pass_retries = _Retries(Backoff(config.backoff_initial, config.backoff_cap,
                                             jitter=0.0))
        apply_initial = min(max(config.backoff_initial, MIN_APPLY_BACKOFF), config.backoff_cap)
        self.apply_retries = _Retries(Backoff(apply_initial, config.backoff_cap, jitter=0.0))
        self._apply_due = 0.0              # monotonic time before which passes do not apply
        self._apply_retry_pending = False  # a backed-off apply waits for `_apply_due`

    # ---- what the pass runner holds ------------------------------------------------------------

    @property
    def store(self) -> Any:
        return self.runner.store

    @property
    def own_correlation_ids(self) -> set[str]:
        return self.runner.own_correlation_ids

    def run_pass(self, reasons: frozenset[str] | set[str] = frozenset({"manual"}),
                 may_apply: bool = True) -> PassOutcome:
        """One pass (the loop's, or a caller's own: then it applies whenever the mode allows)."""
        return self.runner.run_pass(reasons, may_apply)

    def close_link(self) -> None:
        self.runner.close_link()

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._halt.set()
        self.queue.close()

    # ---- leadership (the supervisor's lease keeper calls these) ------------------------------

    def leading(self) -> bool:
        return self.keeper is None or self.engine is None or self.keeper.leading(self.engine)

    def lead(self, lease: EngineLease) -> None:
        """This replica now leads the engine: reconcile at once."""
        self._lease = lease
        if not self.stopping:
            self._halt.clear()
        self.state.set_role("leader", lease.leader, lease.term, lease.taken_over_from)
        if lease.taken_over_from:
            self.runner.resume()
        self.queue.put("leader")

    def follow(self) -> None:
        """The lease is gone: an apply ends at its next safe point, the loop stands by."""
        self._halt.set()
        self.state.set_role("standby", None)
        self.queue.put("lease-lost")

    def _lease_unlock(self, store: Any, engine_key: str) -> str | None:
        """The apply lock's holder run to take over: the one the replica whose expired lease
        we took left behind (its host and pid are in its replica id)."""
        lease = self._lease
        if lease is None or not lease.taken_over_from:
            return None
        info = store.lock_info(engine_key)
        if info is None:
            return None
        host, _, rest = lease.taken_over_from.partition(":")
        pid = rest.partition(":")[0]
        return str(info.run_id) if (info.host, str(info.pid)) == (host, pid) else None

    def start_triggers(self) -> None:
        cfg = self.config
        if self._own_spec_triggers:
            if self.runner.git is not None:
                self._triggers.append(GitPoller(self.queue, self.runner.git,
                                                cfg.git_poll).start())
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
                reasons = self.queue.get(timeout=self._idle_timeout())
                self.state.beat()
                if not self.leading():
                    self._stand_by(reasons)
                    continue
                if self._apply_retry_due():
                    reasons = (reasons or frozenset()) | {"apply-retry"}
                if not reasons or self.stopping:
                    continue
                started = time.monotonic()
                may_apply = time.monotonic() >= self._apply_due
                outcome = self.run_pass(reasons, may_apply=may_apply)
                not_before = self._after_pass(outcome, time.monotonic() - started)
        finally:
            self.stop_triggers()
            self.runner.close()
            self.state.loop_stopped()

    def _stand_by(self, reasons: frozenset[str]) -> None:
        """Another replica leads this engine: no engine link, no watchers, no pass; the spec is
        still loaded when it changes, so this replica is ready to take over."""
        if self.runner.linked:
            self.runner.close_link()
            self.log.info("controller.standing_by", engine=self.engine)
        if reasons & (NEW_SPEC | {"start"}) and not self.stopping:
            self.runner.load_spec()

    def _after_pass(self, outcome: PassOutcome, took: float) -> float:
        """Read a pass's outcome: the time before which no pass runs, and the apply schedule."""
        match outcome.apply:
            case "converged":
                self.apply_retries.reset()
                self._apply_due = 0.0
                self._apply_retry_pending = False
            case "retry":
                delay = self.apply_retries.failed()
                self.log.info("controller.apply_backoff", retry_in=delay,
                              failures=self.apply_retries.failures)
                self._apply_due = time.monotonic() + delay
                self._apply_retry_pending = True
        if outcome.result == "error":
            delay = self.pass_retries.failed()
            self.log.warning("controller.pass_backoff", error=outcome.error, retry_in=delay,
                             failures=self.pass_retries.failures)
            self.queue.put("retry")
            return time.monotonic() + delay
        self.pass_retries.reset()
        # A busy engine logs events all the time: without a pause, passes (each a full
        # observation, host probes included) would run back to back. Waiting as long as the pass
        # took keeps the controller at most half busy; a spec change still goes at once.
        return time.monotonic() + min(took, self.config.hold_off_cap)

    def _apply_retry_due(self) -> bool:
        """True once, when a backed-off apply may be tried again."""
        if self._apply_retry_pending and time.monotonic() >= self._apply_due:
            self._apply_retry_pending = False
            return True
        return False

    def _idle_timeout(self) -> float:
        """How long to wait for a trigger: the heartbeat, or less when an apply retry is due."""
        if self._apply_retry_pending:
            return max(0.0, min(self.config.idle_beat, self._apply_due - time.monotonic()))
        return self.config.idle_beat


class Runnable(Protocol):
    """A loop that runs until stopped: the controller, the supervisor."""

    def run(self) -> None: ...

    def stop(self) -> None: ...


@contextmanager
def in_background(worker: Runnable, name: str) -> Iterator[threading.Thread]:
    """Run `worker` in a background thread for the `with` block; stop it after."""
    thread = threading.Thread(target=worker.run, name=name, daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.stop()
        thread.join()


def running(controller: Controller) -> AbstractContextManager[threading.Thread]:
    """Run the controller in a background thread for the `with` block; stop it after."""
    return in_background(controller, "reconcile-loop")


__all__ = ["Controller", "ControllerConfig", "NEW_SPEC", "running", "spec_revision"]
