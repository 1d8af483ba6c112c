"""What one controller process shows when it runs a loop per engine: /status, /readyz, /healthz
and /metrics over every engine loop, and who leads what.

`ReplicaState` reads like a `ControllerState` (the server needs nothing else): with one engine
its /status is that engine's document as before, plus the replica's fields; with several, the
engines are listed under `engines`, each with its own document. `ReplicaMetrics` renders every
engine loop's registry as one exposition: with one engine unchanged, with several each sample
carries an `engine` label; the replica's own series (leases, replicas) are added.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from reconciler.controller.leadership import LeaseKeeper
from reconciler.controller.metrics import PREFIX, ControllerMetrics
from reconciler.controller.server import ControllerState, FleetPages, _iso, _now


class ReplicaState:
    """The supervisor's view over its engine loops' states (supervisor.py keeps it current)."""

    def __init__(self, mode: str, replica: str, keeper: LeaseKeeper | None = None,
                 stall_after: float = 600.0) -> None:
        self.mode = mode
        self.replica = replica
        self.keeper = keeper
        self.stall_after = stall_after
        self._lock = threading.Lock()
        self._engines: dict[str, ControllerState] = {}
        self._running = False
        self._beat: float | None = None
        self._spec_error: str | None = None
        self._spec_loaded = False
        self._revision: str | None = None
        self._started_at = _now()
        self._empty = FleetPages()

    # -- the supervisor writes ------------------------------------------------------------------

    def set_engines(self, engines: dict[str, ControllerState]) -> None:
        with self._lock:
            self._engines = dict(engines)

    def loop_started(self) -> None:
        with self._lock:
            self._running, self._beat = True, time.monotonic()

    def loop_stopped(self) -> None:
        with self._lock:
            self._running = False

    def beat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def spec_loaded(self, revision: str) -> None:
        with self._lock:
            self._spec_loaded, self._spec_error, self._revision = True, None, revision

    def spec_failed(self, error: str) -> None:
        with self._lock:
            self._spec_error = error

    # -- the server reads -------------------------------------------------------------------------

    @property
    def engines(self) -> dict[str, ControllerState]:
        with self._lock:
            return dict(self._engines)

    @property
    def fleet(self) -> FleetPages:
        """The fleet map of the first engine this replica leads (else of the first engine)."""
        engines = self.engines
        for state in engines.values():
            if state.role != "standby" and state.fleet.current is not None:
                return state.fleet
        return next(iter(engines.values())).fleet if engines else self._empty

    def liveness(self) -> tuple[bool, str]:
        with self._lock:
            running, beat = self._running, self._beat
        if not running:
            return False, "the supervisor loop is not running"
        age = time.monotonic() - (beat or 0.0)
        if age > self.stall_after:
            return False, f"the supervisor loop has not progressed for {age:.0f}s"
        for ident, state in self.engines.items():
            alive, why = state.liveness()
            if not alive:
                return False, f"{ident}: {why}"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        alive, why = self.liveness()
        if not alive:
            return False, why
        with self._lock:
            loaded, error = self._spec_loaded, self._spec_error
        engines = self.engines
        if not loaded or not engines:
            return False, (f"the spec could not be loaded: {error}" if error
                           else "the spec is not loaded yet")
        if len(engines) == 1:
            return next(iter(engines.values())).readiness()
        bad = []
        for ident, state in engines.items():
            ok, reason = state.readiness()
            if not ok:
                bad.append(f"{ident}: {reason}")
        if bad:
            return False, "; ".join(bad)
        led = [i for i, s in engines.items() if s.role != "standby"]
        return True, f"ok; leading {len(led)} of {len(engines)} engines"

    def leases(self) -> dict[str, Any]:
        if self.keeper is None:
            return {}
        return {e: {"leader": lease.leader, "term": lease.term, "mine": lease.mine,
                    "expires_at": _iso_epoch(lease.expires_at)}
                for e, lease in self.keeper.view().items()}

    def snapshot(self) -> dict[str, Any]:
        engines = self.engines
        leases = self.leases()
        replica = {"id": self.replica,
                   "replicas": self.keeper.replicas if self.keeper is not None else 1,
                   "store_ok": self.keeper.healthy if self.keeper is not None else True,
                   "store_error": self.keeper.error if self.keeper is not None else None,
                   "lease_ttl": self.keeper.ttl if self.keeper is not None else None,
                   "leading": [e for e, s in engines.items() if s.role == "leader"]}
        listed = []
        for ident, state in engines.items():
            doc = state.snapshot()
            doc["id"] = ident
            doc["lease"] = leases.get(ident)
            listed.append(doc)
        if len(listed) == 1:
            out = dict(listed[0])
            out["spec_error"] = out.get("spec_error") or self._spec_error
        else:
            with self._lock:
                out = {"mode": self.mode, "started_at": _iso(self._started_at),
                       "revision": self._revision, "spec_error": self._spec_error,
                       "engine": None,
                       "drift": {"count": sum(d["drift"]["count"] for d in listed),
                                 "items": []}}
        out["replica"] = replica
        out["engines"] = listed
        return out


def _iso_epoch(at: float | None) -> str | None:
    if at is None:
        return None
    from datetime import datetime, timezone
    return _iso(datetime.fromtimestamp(at, tz=timezone.utc))


class _Merged(Collector):
    """Every engine loop's registry as one, an `engine` label added when there are several."""

    def __init__(self, engines: Callable[[], dict[str, ControllerMetrics]]) -> None:
        self._engines = engines

    def collect(self) -> Iterator[Metric]:
        engines = self._engines()
        label = len(engines) > 1
        families: dict[str, Metric] = {}
        for ident, metrics in engines.items():
            for family in metrics.registry.collect():
                merged = families.get(family.name)
                if merged is None:
                    merged = Metric(family.name, family.documentation, family.type, family.unit)
                    families[family.name] = merged
                for sample in family.samples:
                    labels = dict(sample.labels, engine=ident) if label else sample.labels
                    merged.samples.append(sample._replace(labels=labels))
        yield from families.values()


class ReplicaMetrics:
    """/metrics of a replica: every engine loop's series and the replica's own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, keeper: LeaseKeeper | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._lock = threading.Lock()
        self._engines: dict[str, ControllerMetrics] = {}
        self.keeper = keeper
        self.registry.register(_Merged(self.engines))
        self.registry.register(_Leases(self))

    def engines(self) -> dict[str, ControllerMetrics]:
        with self._lock:
            return dict(self._engines)

    def set_engines(self, engines: dict[str, ControllerMetrics]) -> None:
        with self._lock:
            self._engines = dict(engines)

    def track(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        from prometheus_client import Gauge
        Gauge(f"{PREFIX}_{name}", documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Leases(Collector):
    def __init__(self, owner: ReplicaMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        keeper = self._owner.keeper
        leader = GaugeMetricFamily(f"{PREFIX}_leader",
                                   "1 when this replica leads the engine, else 0", labels=["engine"])
        replicas = GaugeMetricFamily(f"{PREFIX}_replicas",
                                     "Live controller replicas sharing the store")
        moves = GaugeMetricFamily(f"{PREFIX}_lease_transitions",
                                  "Leases this replica gained, lost or gave up since it started")
        store_ok = GaugeMetricFamily(f"{PREFIX}_lease_store_up",
                                     "1 when the last lease round reached the store")
        engines = self._owner.engines()
        for ident in engines:
            leading = keeper is None or keeper.leading(ident)
            leader.add_metric([ident], 1.0 if leading else 0.0)
        replicas.add_metric([], float(keeper.replicas if keeper is not None else 1))
        moves.add_metric([], float(keeper.transitions if keeper is not None else 0))
        store_ok.add_metric([], 1.0 if keeper is None or keeper.healthy else 0.0)
        yield from (leader, replicas, moves, store_ok)


__all__ = ["ReplicaMetrics", "ReplicaState"]
