"""Prometheus metrics of the controller, in a registry of their own (never the global one).

A registry per controller keeps tests and several controllers in one process independent, and keeps
the process-wide default collectors out of what we promise to export.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from reconciler.controller.fleet_metrics import FleetCollector

PassResult = Literal["ok", "drift", "error"]
PASS_RESULTS: tuple[PassResult, ...] = ("ok", "drift", "error")
STEP_OUTCOMES = ("ok", "failed", "skipped")
PREFIX = "gpu_reconciler"

# A pass observes the engine and every host: seconds to minutes, not milliseconds.
PASS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class ControllerMetrics:
    """The controller's metrics; `render()` gives the Prometheus text exposition."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.drift_items = Gauge(f"{PREFIX}_drift_items", "Open drift items by drift class",
                                 ["class"], registry=r)
        self.last_pass_timestamp = Gauge(f"{PREFIX}_last_pass_timestamp_seconds",
                                         "Unix time the last reconcile pass finished", registry=r)
        self.last_pass_result = Gauge(f"{PREFIX}_last_pass_result",
                                      "1 for the result of the last pass, 0 for the others",
                                      ["result"], registry=r)
        self.passes = Counter(f"{PREFIX}_passes", "Reconcile passes by result", ["result"],
                              registry=r)
        self.pass_duration = Histogram(f"{PREFIX}_pass_duration_seconds",
                                       "Duration of reconcile passes", buckets=PASS_BUCKETS,
                                       registry=r)
        self.apply_steps = Counter(f"{PREFIX}_apply_steps", "Apply steps by outcome",
                                   ["outcome"], registry=r)
        self.engine_requests = Counter(f"{PREFIX}_engine_requests",
                                       "Requests sent to the oVirt engine", registry=r)
        self.engine_errors = Counter(f"{PREFIX}_engine_errors",
                                     "Engine requests that failed (after the client's retries)",
                                     registry=r)
        self.device_polls = Counter(f"{PREFIX}_device_polls",
                                    "Polls of the spec's VMs' devices (event-less drift)",
                                    registry=r)
        self.device_poll_seconds = Gauge(f"{PREFIX}_device_poll_seconds",
                                         "Wall time of the last device poll", registry=r)
        self.device_poll_cpu_seconds = Gauge(f"{PREFIX}_device_poll_cpu_seconds",
                                             "CPU time this process spent on the last device "
                                             "poll", registry=r)
        self.device_poll_interval = Gauge(f"{PREFIX}_device_poll_interval_seconds",
                                          "The device poll's interval, adapted to its cost",
                                          registry=r)
        self._known_classes: set[str] = set()
        # The fleet GPU map's series (fleet_metrics.py), from the last pass's map.
        self.fleet = FleetCollector()
        r.register(self.fleet)
        # Export every labelled series from the start, so dashboards see zeros, not gaps.
        for result in PASS_RESULTS:
            self.passes.labels(result=result)
            self.last_pass_result.labels(result=result).set(0)
        for outcome in STEP_OUTCOMES:
            self.apply_steps.labels(outcome=outcome)

    def record_pass(self, result: PassResult, duration: float, at: float | None = None) -> None:
        if result not in PASS_RESULTS:
            raise ValueError(f"pass result must be one of {PASS_RESULTS}, not {result!r}")
        self.passes.labels(result=result).inc()
        self.pass_duration.observe(max(duration, 0.0))
        self.last_pass_timestamp.set(time.time() if at is None else at)
        for other in PASS_RESULTS:
            self.last_pass_result.labels(result=other).set(1 if other == result else 0)

    def set_drift(self, counts_by_class: Mapping[str, int]) -> None:
        """The open drift items now, by class; classes no longer present drop to 0."""
        for cls in self._known_classes - set(counts_by_class):
            self.drift_items.labels(**{"class": cls}).set(0)
        for cls, count in counts_by_class.items():
            self.drift_items.labels(**{"class": cls}).set(count)
        self._known_classes |= set(counts_by_class)

    def apply_step(self, outcome: str) -> None:
        self.apply_steps.labels(outcome=outcome).inc()

    def engine_request(self, failed: bool = False) -> None:
        self.engine_requests.inc()
        if failed:
            self.engine_errors.inc()

    def engine_requests_add(self, requests: int, errors: int = 0) -> None:
        """Add counts collected elsewhere (e.g. a client's request counter after a pass)."""
        if requests:
            self.engine_requests.inc(requests)
        if errors:
            self.engine_errors.inc(errors)

    def device_poll(self, cost: Any, interval: float) -> None:
        """One device poll's cost (devicepoll.PollCost) and the interval it set."""
        self.device_polls.inc()
        self.device_poll_seconds.set(cost.wall)
        self.device_poll_cpu_seconds.set(cost.cpu)
        self.device_poll_interval.set(interval)

    def track(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """Export a value read at scrape time (e.g. the notifier's dropped events)."""
        Gauge(f"{PREFIX}_{name}", documentation, registry=self.registry).set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
