"""The one way to reach the engine: a verified ovirtsdk4 connection, retries, request counting.

Observe and apply share this module, so TLS, credentials, retry policy and the request count are the
same everywhere. The SDK keeps one SSO token per connection and renews it itself on a 401.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import ovirtsdk4

from reconciler.engine.retry import DEFAULT_TIMING, Timing, read
from reconciler.errors import EngineError
from reconciler.log import get_logger
from reconciler.spec.model import EngineSpec

_log = get_logger(__name__)


class CountingConnection(ovirtsdk4.Connection):
    """An SDK connection that counts the API requests it sends, the bytes it receives and the
    requests that failed (an error status or no answer at all).

    `send` is the SDK's single entry for every service call (synchronous or `wait=False`), and
    `wait` returns every response, so counting there sees exactly what goes over the wire (the SSO
    token request is not an API request and is not counted). libcurl itself resends a request
    once, unseen here, when a reused keep-alive connection turns out to be closed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._count_lock = threading.Lock()
        self.request_count = 0
        self.bytes_received = 0
        self.failed_count = 0
        # Ids of hosts and VMs found by name (apply's lookups), kept as long as the connection.
        self.id_cache: dict[tuple[str, str], str] = {}

    def send(self, request: Any) -> Any:
        with self._count_lock:
            self.request_count += 1
        try:
            return super().send(request)
        except Exception:
            with self._count_lock:
                self.failed_count += 1
            raise

    def wait(self, context: Any, failed_auth: bool = False) -> Any:
        try:
            response = super().wait(context, failed_auth)
        except Exception:
            with self._count_lock:
                self.failed_count += 1
            raise
        body = getattr(response, "body", None) or b""
        with self._count_lock:
            self.bytes_received += len(body)
            if (getattr(response, "code", None) or 0) >= 400:
                self.failed_count += 1
        return response


def resolve_password(engine: EngineSpec) -> str:
    """The engine password from the environment variable or file the spec names."""
    if engine.password_env:
        value = os.environ.get(engine.password_env)
        if not value:
            raise EngineError(f"engine password: environment variable {engine.password_env} "
                              "is not set or empty (engine.passwordFrom.env)")
        return value
    if engine.password_file:
        path = Path(engine.password_file).expanduser()
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise EngineError(f"engine password: cannot read file {path} "
                              f"(engine.passwordFrom.file): {exc.strerror}") from None
        if not value:
            raise EngineError(f"engine password: file {path} is empty (engine.passwordFrom.file)")
        return value
    raise EngineError("engine password: the spec names no source (engine.passwordFrom.env or "
                      "engine.passwordFrom.file)")


def connect(engine: EngineSpec, *, url: str | None = None, ca_file: Path | str | None = None,
            username: str | None = None, password: str | None = None,
            connections: int = 4) -> CountingConnection:
    """Open a connection: TLS verified against the CA file unless the spec says `insecure`.

    The keyword arguments override the spec (the embedded lab supplies its own URL, CA and
    credentials). Nothing is sent until the first request; `check_connection` tests it at once.
    `connections` bounds the parallel connections that asynchronous (`wait=False`) calls use.
    """
    url = url or engine.url
    if not url:
        raise EngineError("engine.url is missing")
    username = username or engine.username
    if not username:
        raise EngineError("engine.username is missing")
    if password is None:
        password = resolve_password(engine)
    ca = Path(ca_file) if ca_file is not None else engine.ca_file
    if url.startswith("https") and not engine.insecure:
        if ca is None:
            raise EngineError("engine.caFile is required to verify the engine's TLS certificate "
                              "(set engine.insecure: true only for throw-away setups)")
        ca = Path(ca).expanduser()
        if not ca.is_file():
            raise EngineError(f"engine CA file {ca} does not exist (engine.caFile)")
    try:
        return CountingConnection(
            url=url, username=username, password=password,
            ca_file=str(ca) if ca is not None and not engine.insecure else None,
            insecure=engine.insecure, timeout=max(1, int(engine.timeout_seconds)),
            connections=connections, compress=True)
    except ovirtsdk4.Error as exc:
        raise EngineError(f"cannot set up the engine connection to {url}: {exc}") from None


def check_connection(connection: ovirtsdk4.Connection, *,
                     timing: Timing = DEFAULT_TIMING) -> None:
    """Authenticate now, so a bad CA or bad credentials fail with a clear message up front.

    An engine that is restarting (connection refused, 5xx) is retried like any request; TLS and
    credential errors are permanent and fail at once.
    """
    read(connection.authenticate, "authenticate", timing=timing, url=connection.url)
