"""Webhook notifications: JSON events POSTed from a background thread.

The caller never waits: events go into a bounded queue (when it is full the oldest event is dropped
and counted) and one sender thread delivers them in order, retrying failures with capped exponential
backoff. Webhook URLs often embed a token (Slack, Teams), so only the scheme and host are logged.
"""
from __future__ import annotations

import collections
import hashlib
import hmac
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from reconciler import log
from reconciler.errors import ReconcilerError

EventName = Literal["drift.new", "drift.resolved", "apply.started", "apply.finished",
                    "apply.failed"]
EVENTS: frozenset[str] = frozenset({"drift.new", "drift.resolved", "apply.started",
                                    "apply.finished", "apply.failed"})
SIGNATURE_HEADER = "X-Gpu-Reconciler-Signature"


class NotifyError(ReconcilerError):
    """The webhook is configured wrongly (bad URL, unreadable CA file)."""


@dataclass(frozen=True)
class Event:
    event: str
    at: str
    engine: str
    details: Mapping[str, Any]

    def body(self) -> bytes:
        return json.dumps({"event": self.event, "at": self.at, "engine": self.engine,
                           "details": dict(self.details)}, sort_keys=True, default=str).encode()


class _Permanent(Exception):
    """The receiver refused the event in a way retrying cannot fix (4xx other than 408/429)."""


class WebhookNotifier:
    """POST events to `url`. `notify()` never blocks; `close(timeout)` drains what is queued.

    Retries: each event is tried once plus `retries` more times, waiting
    min(backoff_cap, backoff * 2**n) between tries. A `secret` adds an HMAC-SHA256 of the body
    in the X-Gpu-Reconciler-Signature header (`sha256=<hex>`), so receivers can authenticate us.
    """

    def __init__(self, url: str, *, max_queue: int = 1000, retries: int = 5,
                 timeout: float = 10.0, backoff: float = 0.5, backoff_cap: float = 30.0,
                 secret: str | bytes | None = None, ca_file: str | Path | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise NotifyError(f"webhook URL must be http(s)://host/..., not {self._safe(url)!r}")
        if max_queue < 1 or retries < 0 or timeout <= 0:
            raise NotifyError("webhook: max_queue must be >= 1, retries >= 0 and timeout > 0")
        self._url = url
        self.target = self._safe(url)
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._backoff_cap = backoff_cap
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self._headers = dict(headers or {})
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                self._context = ssl.create_default_context(
                    cafile=str(ca_file) if ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise NotifyError(f"webhook CA file {ca_file}: {exc}") from exc
        self._queue: collections.deque[Event] = collections.deque()
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._closing = False
        self._abort = threading.Event()
        self._in_flight = False
        self.sent = 0
        self.dropped = 0
        self.failed = 0
        self._log = log.get_logger("controller.notify")
        self._thread = threading.Thread(target=self._run, name="webhook-notifier", daemon=True)
        self._thread.start()

    @staticmethod
    def _safe(url: str) -> str:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")

    # -- producer side ------------------------------------------------------------------------

    def notify(self, event: EventName, engine: str, details: Mapping[str, Any] | None = None,
               at: datetime | None = None) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}; one of {sorted(EVENTS)}")
        stamp = (at or datetime.now(timezone.utc)).isoformat().replace("+00:00", "Z")
        item = Event(event, stamp, engine, dict(details or {}))
        with self._cond:
            if self._closing:
                self.dropped += 1
                return
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append(item)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + (1 if self._in_flight else 0)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False when `timeout` ran out first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> bool:
        """Deliver what is queued within `timeout` seconds; True when nothing was left behind."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._abort.set()  # cut short a backoff wait; an in-flight POST ends by its timeout
            self._thread.join(self._timeout + 1)
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self.dropped += left
        return left == 0 and not self._thread.is_alive()

    def __enter__(self) -> WebhookNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sender thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._abort.is_set():
                    return
                item = self._queue.popleft()
                self._in_flight = True
            try:
                self._deliver(item)
            except Exception as exc:  # noqa: BLE001 - the sender must outlive any one event
                self.failed += 1
                self._log.error("notify.sender_error", target=self.target, kind=item.event,
                                error=f"{type(exc).__name__}: {exc}")
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()

    def _deliver(self, item: Event) -> None:
        body = item.body()
        for attempt in range(self._retries + 1):
            try:
                self._post(body)
                self.sent += 1
                return
            except _Permanent as exc:
                self._log.warning("notify.refused", target=self.target,
                                  kind=item.event, error=str(exc))
                break
            except (OSError, urllib.error.URLError) as exc:
                error = str(getattr(exc, "reason", exc))
            if attempt == self._retries:
                self._log.warning("notify.given_up", target=self.target, kind=item.event,
                                  attempts=attempt + 1, error=error)
                break
            delay = min(self._backoff_cap, self._backoff * (2 ** attempt))
            self._log.debug("notify.retry", target=self.target, kind=item.event,
                            attempt=attempt + 1, delay=delay, error=error)
            if self._abort.wait(delay):
                break
        self.failed += 1

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "gpu-reconciler",
                   **self._headers}
        if self._secret:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout,
                                        context=self._context) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise _Permanent(f"HTTP {exc.code} {exc.reason}") from exc
            raise OSError(f"HTTP {exc.code} {exc.reason}") from exc

