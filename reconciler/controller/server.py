"""The controller's HTTP endpoints: /healthz, /readyz, /metrics, /status, and the fleet GPU map:
`/` (the page, refreshing itself), `/fleet.json` (schemas/fleet.schema.json) and
`/fleet-page.json` (the page's compact data).

The server only reads a `ControllerState`, which the controller loop updates; nothing here changes
the fleet, so the endpoints carry no authentication and bind to 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from reconciler import log
from reconciler.controller.metrics import ControllerMetrics, PassResult
from reconciler.errors import ReconcilerError
from reconciler.fleetmap.model import FleetMap
from reconciler.fleetmap.render_html import data_json, render_html
from reconciler.fleetmap.render_json import render_json

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9180


class ServerError(ReconcilerError):
    """The status server cannot listen where it was asked to."""


class _DriftLike(Protocol):
    """A drift item: the store's `DriftItemRecord` (`cls`) or the plan's `DriftItem` (`status`).
    Read-only members, so frozen dataclasses match."""

    @property
    def key(self) -> str: ...

    @property
    def message(self) -> str: ...


def _cls(item: _DriftLike) -> str:
    value = getattr(item, "cls", None) or getattr(item, "status", None)
    if not isinstance(value, str):
        raise TypeError(f"drift item {item!r} has neither `cls` nor `status`")
    return value


@dataclass(frozen=True)
class DriftStatus:
    key: str
    cls: str
    message: str
    first_seen: datetime | None = None


@dataclass(frozen=True)
class PassStatus:
    started_at: datetime
    finished_at: datetime
    result: PassResult
    duration: float
    error: str | None = None
    trigger: str | None = None


@dataclass(frozen=True)
class ApplyStatus:
    run_id: str
    started_at: datetime
    step: str | None = None
    steps_done: int = 0
    steps_total: int | None = None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _now() -> datetime:
    return datetime.now(timezone.utc)


class ControllerState:
    """What the controller is doing, shared between the loop (writer) and the server (reader).

    Every method takes the lock, so the loop and any number of request threads may call them.
    `stall_after` is how long the loop may go without `beat()` before /healthz fails.
    """

    def __init__(self, mode: str = "observe", engine: str | None = None,
                 stall_after: float = 600.0) -> None:
        self.mode = mode
        self.engine = engine
        self.stall_after = stall_after
        self._lock = threading.Lock()
        self._loop_running = False
        self._last_beat: float | None = None
        self._revision: str | None = None
        self._spec_loaded = False
        self._spec_error: str | None = None
        self._last_pass: PassStatus | None = None
        self._pass_started: datetime | None = None
        self._drift: tuple[DriftStatus, ...] = ()
        self._apply: ApplyStatus | None = None
        self._last_apply: dict[str, Any] | None = None
        self._applied_revision: str | None = None
        self._started_at = _now()
        self._fleet = FleetPages()
        self._role: str | None = None          # leader | standby; None: no leases (one process)
        self._leader: str | None = None
        self._term: int | None = None
        self._taken_over_from: str | None = None

    @property
    def fleet(self) -> FleetPages:
        """The fleet map of the last pass that observed the fleet, rendered on demand."""
        return self._fleet

    # -- writers (the loop) -------------------------------------------------------------------

    def loop_started(self) -> None:
        with self._lock:
            self._loop_running = True
            self._last_beat = time.monotonic()

    def beat(self) -> None:
        """The loop is alive; call it at least every `stall_after` seconds, even when idle."""
        with self._lock:
            self._last_beat = time.monotonic()

    def loop_stopped(self) -> None:
        with self._lock:
            self._loop_running = False

    def set_role(self, role: str, leader: str | None, term: int | None = None,
                 taken_over_from: str | None = None) -> None:
        """Whether this replica leads the engine (controller/leadership.py)."""
        with self._lock:
            self._role, self._leader, self._term = role, leader, term
            self._taken_over_from = taken_over_from

    @property
    def role(self) -> str | None:
        with self._lock:
            return self._role

    def set_mode(self, mode: str) -> None:
        with self._lock:
            self.mode = mode

    def spec_loaded(self, revision: str | None) -> None:
        with self._lock:
            self._revision = revision
            self._spec_loaded = True
            self._spec_error = None

    def spec_failed(self, error: str) -> None:
        """The spec could not be loaded; a previously loaded revision stays in force."""
        with self._lock:
            self._spec_error = error

    def pass_started(self) -> None:
        with self._lock:
            self._pass_started = _now()

    def pass_finished(self, result: PassResult, duration: float, error: str | None = None,
                      drift: Iterable[_DriftLike] | None = None,
                      first_seen: Mapping[tuple[str, str, str], datetime] | None = None,
                      trigger: str | None = None) -> None:
        """Record a finished pass; `drift` replaces the drift list when given."""
        finished = _now()
        with self._lock:
            started = self._pass_started or finished
            self._last_pass = PassStatus(started, finished, result, duration, error, trigger)
            self._pass_started = None
            if drift is not None:
                seen = first_seen or {}
                self._drift = tuple(
                    DriftStatus(d.key, _cls(d), d.message, seen.get((d.key, _cls(d), d.message)))
                    for d in drift)

    def apply_started(self, run_id: str, steps_total: int | None = None) -> None:
        with self._lock:
            self._apply = ApplyStatus(run_id, _now(), None, 0, steps_total)

    def apply_step(self, run_id: str, step: str, steps_done: int | None = None) -> None:
        with self._lock:
            current = self._apply
            if current is None or current.run_id != run_id:
                current = ApplyStatus(run_id, _now())
            done = current.steps_done if steps_done is None else steps_done
            self._apply = ApplyStatus(run_id, current.started_at, step, done, current.steps_total)

    def apply_finished(self, run_id: str | None, outcome: str, message: str | None = None,
                       revision: str | None = None) -> None:
        """`revision` is the spec revision the apply converged to (a git commit with --git)."""
        with self._lock:
            self._apply = None
            self._last_apply = {"run_id": run_id, "outcome": outcome, "message": message,
                                "finished_at": _iso(_now()), "revision": revision}
            if outcome == "ok" and revision is not None:
                self._applied_revision = revision

    # -- readers (the server) -----------------------------------------------------------------

    def liveness(self) -> tuple[bool, str]:
        with self._lock:
            if not self._loop_running:
                return False, "the reconcile loop is not running"
            age = time.monotonic() - (self._last_beat or 0.0)
            if age > self.stall_after:
                return False, f"the reconcile loop has not progressed for {age:.0f}s"
            return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        alive, why = self.liveness()
        if not alive:
            return False, why
        with self._lock:
            if not self._spec_loaded:
                reason = "the spec is not loaded yet"
                if self._spec_error:
                    reason = f"the spec could not be loaded: {self._spec_error}"
                return False, reason
            if self._role == "standby":
                if self._leader is None:
                    return False, "waiting for the engine's lease (no replica leads it yet)"
                # Ready to take over: the spec is loaded; another replica reconciles.
                return True, (f"standby: {self.engine or 'the engine'} is led by replica "
                              f"{self._leader}")
            last = self._last_pass
            if last is None:
                return False, "the first reconcile pass has not completed yet"
            if last.result == "error":
                # Ready means the controller currently sees the fleet: a failed last pass (engine
                # unreachable, a broken session) leaves /status describing an older world.
                return False, (f"the last reconcile pass failed at {_iso(last.finished_at)}: "
                               f"{last.error or 'unknown error'}")
            if self._spec_error:
                return True, f"ok, but the spec could not be reloaded: {self._spec_error}"
            return True, "ok"

    def snapshot(self) -> dict[str, Any]:
        """The /status document."""
        with self._lock:
            last = self._last_pass
            apply = self._apply
            return {
                "mode": self.mode,
                "engine": self.engine,
                "role": self._role,
                "leader": self._leader,
                "term": self._term,
                "taken_over_from": self._taken_over_from,
                "started_at": _iso(self._started_at),
                "revision": self._revision,
                "applied_revision": self._applied_revision,
                "spec_error": self._spec_error,
                "pass_running": self._pass_started is not None,
                "last_pass": None if last is None else {
                    "time": _iso(last.finished_at), "started_at": _iso(last.started_at),
                    "result": last.result, "duration": round(last.duration, 3),
                    "error": last.error, "trigger": last.trigger},
                "drift": {
                    "count": len(self._drift),
                    "items": [{"key": d.key, "class": d.cls, "message": d.message,
                               "since": _iso(d.first_seen)} for d in self._drift]},
                "apply": None if apply is None else {
                    "run_id": apply.run_id, "started_at": _iso(apply.started_at),
                    "step": apply.step, "steps_done": apply.steps_done,
                    "steps_total": apply.steps_total},
                "last_apply": self._last_apply,
            }


class FleetPages:
    """The last fleet map and its renderings, each made once per map on first request (the
    page of 1,000 hosts takes a noticeable time to render; scrapes and reloads reuse it)."""

    def __init__(self, refresh_seconds: int = 30) -> None:
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._map: FleetMap | None = None
        self._cache: dict[str, bytes] = {}

    def update(self, fleet: FleetMap) -> None:
        with self._lock:
            self._map, self._cache = fleet, {}

    @property
    def current(self) -> FleetMap | None:
        return self._map

    def _get(self, kind: str) -> bytes:
        with self._lock:
            if kind not in self._cache:
                fm = self._map if self._map is not None else FleetMap((), (), ())
                if kind == "page":
                    text = render_html(fm, live=True, refresh_seconds=self.refresh_seconds)
                elif kind == "json":
                    text = render_json(fm)
                else:
                    text = data_json(fm, live=True)
                self._cache[kind] = text.encode()
            return self._cache[kind]

    def page(self) -> bytes:
        return self._get("page")

    def json(self) -> bytes:
        return self._get("json")

    def page_data(self) -> bytes:
        return self._get("data")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "gpu-reconciler"
    sys_version = ""

    def setup(self) -> None:
        # A client that connects and sends nothing (or idles on keep-alive) must not hold a
        # thread for ever: the socket gets the server's request timeout.
        super().setup()
        self.connection.settimeout(self.server.request_timeout)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        path = self.path.split("?", 1)[0]
        state, metrics = self.server.state, self.server.metrics
        if path == "/healthz":
            ok, why = state.liveness()
            self._text(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, why)
        elif path == "/readyz":
            ok, why = state.readiness()
            self._text(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, why)
        elif path == "/metrics":
            self._send(HTTPStatus.OK, metrics.render(), metrics.content_type)
        elif path == "/status":
            body = json.dumps(state.snapshot(), indent=2, sort_keys=True).encode()
            self._send(HTTPStatus.OK, body + b"\n", "application/json")
        elif path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, state.fleet.page(), "text/html; charset=utf-8")
        elif path == "/fleet.json":
            self._send(HTTPStatus.OK, state.fleet.json(), "application/json")
        elif path == "/fleet-page.json":
            self._send(HTTPStatus.OK, state.fleet.page_data(), "application/json")
        else:
            self._text(HTTPStatus.NOT_FOUND, "not found; try /, /fleet.json, /healthz, /readyz, "
                                             "/metrics or /status")

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.get_logger("controller.http").debug("http request", client=self.client_address[0],
                                                request=format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64   # probes and scrapes arrive together; the stdlib default is 5

    def __init__(self, address: tuple[str, int], state: ControllerState,
                 metrics: ControllerMetrics, request_timeout: float) -> None:
        self.state = state
        self.metrics = metrics
        self.request_timeout = request_timeout
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


class ControllerServer:
    """Serves the endpoints from background threads; `port=0` picks a free port."""

    def __init__(self, state: ControllerState, metrics: ControllerMetrics,
                 host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 request_timeout: float = 10.0) -> None:
        self.state = state
        self.metrics = metrics
        self.request_timeout = request_timeout
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ControllerServer:
        if self._server is not None:
            return self
        try:
            server = _Server((self.host, self._requested_port), self.state, self.metrics,
                             self.request_timeout)
        except OSError as exc:
            raise ServerError(f"cannot serve status on {self.host}:{self._requested_port}: "
                              f"{exc.strerror or exc}") from exc
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="controller-http",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        log.get_logger("controller.http").info("serving status", url=self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> ControllerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def drift_counts(items: Sequence[_DriftLike]) -> dict[str, int]:
    """Open drift items by class, as `ControllerMetrics.set_drift` takes them."""
    counts: dict[str, int] = {}
    for item in items:
        counts[_cls(item)] = counts.get(_cls(item), 0) + 1
    return counts
