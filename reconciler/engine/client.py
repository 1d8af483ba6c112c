"""The one way to reach the engine: a verified ovirtsdk4 connection, retries, request counting.

Observe and apply share this module, so TLS, credentials, retry policy and the request count are the
same everywhere. The SDK keeps one SSO token per connection and renews it itself on a 401.
"""
from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import ovirtsdk4

from reconciler.errors import EngineError
from reconciler.log import get_logger
from reconciler.spec.model import EngineSpec

T = TypeVar("T")

_log = get_logger(__name__)

# libcurl codes that mean the TLS peer could not be verified: never transient, always explained.
_TLS_CURL_CODES = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91})
# libcurl codes worth another try: connect refused, timeout, empty reply, send/recv failure, ...
_TRANSIENT_CURL_CODES = frozenset({7, 18, 28, 52, 55, 56, 92})
_CURL_CODE = re.compile(r"\(<?[^,]*?,?\s*(\d+),")
# A 409 that only says "not now": the engine is busy with a related operation or the entity is
# locked. Other 409s (VM status illegal, not pinned) are real refusals and are not retried.
_BUSY = re.compile(r"busy|locked|in progress|try again later", re.IGNORECASE)


class EngineCallError(EngineError):
    """An engine request failed; `status` is the HTTP status when there was an answer."""

    def __init__(self, message: str, status: int | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class CountingConnection(ovirtsdk4.Connection):
    """An SDK connection that counts the API requests it sends and the bytes it receives.

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

    def send(self, request: Any) -> Any:
        with self._count_lock:
            self.request_count += 1
        return super().send(request)

    def wait(self, context: Any, failed_auth: bool = False) -> Any:
        response = super().wait(context, failed_auth)
        body = getattr(response, "body", None) or b""
        with self._count_lock:
            self.bytes_received += len(body)
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


def check_connection(connection: ovirtsdk4.Connection, *, attempts: int = 4, base: float = 0.5,
                     cap: float = 5.0) -> None:
    """Authenticate now, so a bad CA or bad credentials fail with a clear message up front.

    An engine that is restarting (connection refused, 5xx) is retried like any request; TLS and
    credential errors are permanent and fail at once.
    """
    with_retries(connection.authenticate, attempts=attempts, base=base, cap=cap,
                 what="authenticate", url=connection.url)


def curl_code(exc: BaseException) -> int | None:
    """The libcurl error code an SDK error carries in its message, if any."""
    match = _CURL_CODE.search(str(exc))
    return int(match.group(1)) if match else None


def is_transient(exc: BaseException) -> bool:
    """True for errors another attempt may cure: 5xx, connection trouble, timeouts, busy 409s."""
    if isinstance(exc, ovirtsdk4.AuthError | ovirtsdk4.NotFoundError):
        return False
    if isinstance(exc, ovirtsdk4.ConnectionError | ovirtsdk4.TimeoutError):
        return True
    if isinstance(exc, ovirtsdk4.Error):
        code = getattr(exc, "code", None)
        if code is not None:
            return code >= 500 or (code == 409 and bool(_BUSY.search(str(exc))))
        curl = curl_code(exc)
        if curl is not None:
            return curl in _TRANSIENT_CURL_CODES
    return False


def describe(exc: BaseException, url: str | None = None) -> EngineCallError:
    """A user-facing error for an SDK failure (no credentials in it: the SDK never puts any)."""
    where = f" ({url})" if url else ""
    if isinstance(exc, EngineCallError):
        return exc
    if isinstance(exc, ovirtsdk4.AuthError):
        return EngineCallError(f"the engine refused the credentials{where}: {exc}",
                               getattr(exc, "code", None))
    curl = curl_code(exc)
    if curl in _TLS_CURL_CODES:
        return EngineCallError(f"TLS verification of the engine failed{where}: {exc}. Check that "
                               "engine.caFile holds the CA that signed the engine's certificate")
    if isinstance(exc, ovirtsdk4.Error):
        fault = getattr(exc, "fault", None)
        detail = getattr(fault, "detail", None) if fault is not None else None
        return EngineCallError(f"engine request failed{where}: {exc}", getattr(exc, "code", None),
                               detail)
    return EngineCallError(f"engine request failed{where}: {type(exc).__name__}: {exc}")


def backoff_delays(attempts: int, base: float, cap: float,
                   rng: random.Random | None = None) -> list[float]:
    """Delays before attempts 2..N: "full jitter" capped exponential backoff."""
    rng = rng or random.Random()
    return [rng.uniform(0, min(cap, base * 2 ** i)) for i in range(max(0, attempts - 1))]


def with_retries(fn: Callable[[], T], *, attempts: int = 5, base: float = 0.5, cap: float = 10.0,
                 what: str = "engine request", url: str | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> T:
    """Call `fn`, retrying transient engine errors with capped, jittered exponential backoff.

    Raises EngineCallError (an EngineError) at once for a permanent error, or after the last
    attempt for a transient one.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    delays = backoff_delays(attempts, base, cap, rng)
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below, never swallowed
            if isinstance(exc, EngineCallError) or not is_transient(exc) or attempt == attempts:
                raise describe(exc, url) from exc
            delay = delays[attempt - 1]
            _log.warning("engine_retry", what=what, attempt=attempt, of=attempts,
                         delay=round(delay, 3), error=str(exc)[:200])
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
