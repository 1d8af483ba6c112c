"""One controller process: a loop per engine the spec names, and the leases that say which of
them this replica leads.

The supervisor owns what every engine shares: the spec source and its triggers (spec watcher or
git poller), the lease keeper, the webhook notifier, /status and /metrics. Each engine gets its
own `Controller` loop (loop.py) in a thread of its own, with its own queue, backoffs, engine
link and watchers (events, device poll, host sweep): an engine that is down backs off in its own
loop and never delays another.

When the spec changes, the supervisor re-reads it, starts loops for engines that appeared, stops
loops of engines that went, and hands "spec" to the others. A spec that does not validate keeps
every loop on its last good spec (each loop reports the error on /status, as before).
"""
from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

from reconciler import log
from reconciler.access.endpoint import OpenEndpoint, open_real_endpoint
from reconciler.controller.gitsource import GitPoller
from reconciler.controller.leadership import EngineLease, LeaseKeeper, replica_id
from reconciler.controller.loop import NEW_SPEC, Controller, ControllerConfig, in_background
from reconciler.controller.metrics import ControllerMetrics
from reconciler.controller.notify import WebhookNotifier
from reconciler.controller.reconcile import local_folder
from reconciler.controller.replica import ReplicaMetrics, ReplicaState
from reconciler.controller.server import ControllerState
from reconciler.controller.specsource import SpecSource
from reconciler.controller.triggers import SpecWatcher, WorkQueue
from reconciler.errors import ReconcilerError, SpecError
from reconciler.store import open_store


class _EngineRun:
    def __init__(self, controller: Controller) -> None:
        self.controller = controller
        self.thread = threading.Thread(target=controller.run, daemon=True,
                                       name=f"engine-loop-{controller.engine}")


class Supervisor:
    """`run()` blocks until `stop()`: one loop per engine, leases kept, spec changes handed on."""

    def __init__(self, config: ControllerConfig, notifier: WebhookNotifier | None = None,
                 open_endpoint: OpenEndpoint = open_real_endpoint) -> None:
        self.config = config
        self.replica = config.replica or replica_id()
        self.notifier = notifier
        self.open_endpoint = open_endpoint
        self.log = log.get_logger("controller")
        self.spec = SpecSource.from_config(config, local_folder(config.state))
        self.store = open_store(config.state)
        self.keeper = LeaseKeeper(self.store, self.replica, ttl=config.lease_ttl,
                                  on_gain=self._gained, on_loss=self._lost, busy=self._busy,
                                  on_view=self._viewed)
        self.state = ReplicaState(config.mode, self.replica, self.keeper)
        self.metrics = ReplicaMetrics(self.keeper)
        self.queue = WorkQueue()
        self._stop = threading.Event()
        self._loops: dict[str, _EngineRun] = {}
        self._guard = threading.Lock()
        self._triggers: list[Any] = []

    # ---- engine loops -------------------------------------------------------------------------

    @property
    def loops(self) -> dict[str, Controller]:
        with self._guard:
            return {e: run.controller for e, run in self._loops.items()}

    def _gained(self, engine: str, lease: EngineLease) -> None:
        loop = self.loops.get(engine)
        if loop is not None:
            loop.lead(lease)

    def _lost(self, engine: str) -> None:
        loop = self.loops.get(engine)
        if loop is not None:
            loop.follow()

    def _viewed(self, view: dict[str, EngineLease]) -> None:
        """Standby loops learn who leads their engine (their /status and /readyz say it)."""
        for engine, loop in self.loops.items():
            lease = view.get(engine)
            if lease is not None and not lease.mine and loop.state.role != "leader":
                loop.state.set_role("standby", lease.leader, lease.term or None)

    def _busy(self, engine: str) -> bool:
        loop = self.loops.get(engine)
        return loop is not None and loop.state.snapshot()["apply"] is not None

    def _sync_engines(self, reasons: frozenset[str] = frozenset({"spec"})) -> None:
        """Start a loop for every engine the spec names and stop loops of engines it no longer
        names; every other loop is told the spec changed (with the supervisor's reasons)."""
        told = reasons & NEW_SPEC
        try:
            loaded = self.spec.load()
        except SpecError as err:
            for issue in err.issues:
                self.log.error("controller.spec_invalid", issue=issue.format())
            self.state.spec_failed("; ".join(i.format() for i in err.issues[:5]))
            self._forward(told)
            return
        except ReconcilerError as err:
            self.log.error("controller.spec_not_loaded", error=str(err))
            self.state.spec_failed(str(err))
            self._forward(told)
            return
        self.state.spec_loaded(loaded.revision)
        wanted = list(loaded.engines)
        with self._guard:
            current = dict(self._loops)
        for engine in current.keys() - set(wanted):
            self.log.info("controller.engine_removed", engine=engine)
            self._stop_loop(current[engine])
            with self._guard:
                self._loops.pop(engine, None)
        for engine in wanted:
            if engine in current:
                for reason in told:
                    current[engine].controller.queue.put(reason)
                continue
            self.log.info("controller.engine_added", engine=engine)
            run = self._start_loop(engine)
            with self._guard:
                self._loops[engine] = run
        with self._guard:
            ordered = {e: self._loops[e] for e in wanted if e in self._loops}
            self._loops = ordered
        self.state.set_engines({e: r.controller.state for e, r in ordered.items()})
        self.metrics.set_engines({e: r.controller.metrics for e, r in ordered.items()})
        self.keeper.set_engines(wanted)

    def _start_loop(self, engine: str) -> _EngineRun:
        state = ControllerState(mode=self.config.mode, engine=engine)
        state.set_role("standby", None)
        controller = Controller(self.config, state, ControllerMetrics(), self.notifier,
                                self.open_endpoint, engine=engine, spec=self.spec,
                                keeper=self.keeper)
        run = _EngineRun(controller)
        run.thread.start()
        return run

    def _stop_loop(self, run: _EngineRun) -> None:
        run.controller.stop()
        run.thread.join()
        self.keeper.release(run.controller.engine or "")

    def _forward(self, reasons: frozenset[str]) -> None:
        for loop in self.loops.values():
            for reason in reasons:
                loop.queue.put(reason)

    # ---- lifecycle ----------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        for loop in self.loops.values():
            loop.stop()

    def run(self) -> None:
        self.state.loop_started()
        cfg = self.config
        if self.spec.git is not None:
            self._triggers.append(GitPoller(self.queue, self.spec.git, cfg.git_poll).start())
        else:
            self._triggers.append(SpecWatcher(self.queue, cfg.spec_paths,
                                              debounce_ms=cfg.debounce_ms).start())
        self.queue.put("start")
        self.keeper.start()
        try:
            while not self.stopping:
                reasons = self.queue.get(timeout=cfg.idle_beat)
                self.state.beat()
                if self.stopping:
                    break
                if reasons & (NEW_SPEC | {"start"}) or (not self.loops and reasons):
                    self._sync_engines(reasons)
                elif not self.loops and not reasons:
                    # No engine yet (the first spec was invalid): try again now and then.
                    self._retry_first_spec()
        finally:
            for trigger in self._triggers:
                trigger.stop()
            self._triggers.clear()
            for loop in self.loops.values():
                loop.stop()
            with self._guard:
                runs = list(self._loops.values())
            for run in runs:
                run.thread.join()
            # Released last: the other replicas take over once nothing here acts any more.
            self.keeper.stop(release=True)
            self.store.close()
            self.state.loop_stopped()

    _retries = 0

    def _retry_first_spec(self) -> None:
        self._retries += 1
        if self._retries % max(1, int(30 / max(self.config.idle_beat, 0.1))) == 0:
            self._sync_engines()


def supervising(supervisor: Supervisor) -> AbstractContextManager[threading.Thread]:
    """Run the supervisor in a background thread for the `with` block; stop it after."""
    return in_background(supervisor, "supervisor")


__all__ = ["Supervisor", "supervising"]
