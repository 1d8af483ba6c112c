"""The one way to reach the engine: a verified ovirtsdk4 connection, retries, request counting.

Observe and apply share this module, so TLS, credentials, retry policy and the request count are the
same everywhere. The SDK keeps one SSO token per connection and renews it itself on a 401.
"""
from __future__ import annotations

import io
import json
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import ovirtsdk4
import pycurl

from reconciler.engine.retry import DEFAULT_TIMING, Timing, read
from reconciler.errors import EngineError
from reconciler.log import get_logger
from reconciler.spec.model import EngineSpec

_log = get_logger(__name__)


class CountingConnection(ovirtsdk4.Connection):
    """An SDK connection that counts the API requests it sends, the bytes it receives and the
    requests that failed (an error status or no answer at all), and never waits unbounded.

    `send` is the SDK's single entry for every service call (synchronous or `wait=False`), and
    `wait` returns every response, so counting there sees exactly what goes over the wire (the SSO
    token request is not an API request and is not counted). libcurl itself resends a request
    once, unseen here, when a reused keep-alive connection turns out to be closed.

    Two waits are bounded here rather than in the SDK (docs/engine.md § bounded I/O):
    - `wait` collects answers from the connection's one curl multi handle. The SDK's own loop
      raises for *any* failed transfer it reads, including one of another request sent with
      `wait=False`; that request's answer is then never seen again and waiting for it spins for
      ever. Here a failure is kept for the request it belongs to, and every wait has a deadline
      (the request timeout plus a grace period).
    - The SSO token and logout requests get the same timeout as API requests (the SDK sends them
      with none).
    """

    # Beyond libcurl's own per-request timeout: time to notice a transfer that never ends.
    WAIT_GRACE = 5.0

    # Constructor settings a sibling connection repeats (never the credentials: it gets a token).
    _SIBLING_SETTINGS = ("url", "ca_file", "insecure", "timeout", "compress", "connections")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = {k: kwargs[k] for k in self._SIBLING_SETTINGS if k in kwargs}
        self._count_lock = threading.Lock()
        self.request_count = 0
        self.bytes_received = 0
        self.failed_count = 0
        # Ids of hosts and VMs found by name (apply's lookups), kept as long as the connection.
        self.id_cache: dict[tuple[str, str], str] = {}
        # Transfers that failed while another request was being waited for: handle -> error.
        self._failed_transfers: dict[Any, tuple[int, str]] = {}

    @property
    def wait_limit(self) -> float:
        """The longest wait for one answer, in seconds."""
        return float(self._timeout or 0) + self.WAIT_GRACE

    def sibling(self) -> SiblingConnection:
        """How to open another connection to the same engine that shares this one's SSO token
        (authenticating first if it has none yet): for a reader in another process. Picklable;
        the token is left out of its repr."""
        return SiblingConnection(dict(self._settings), self.authenticate())

    def add_counts(self, requests: int, received: int, failed: int = 0) -> None:
        """Count what a sibling connection sent and received on this connection's behalf."""
        with self._count_lock:
            self.request_count += requests
            self.bytes_received += received
            self.failed_count += failed

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
            with self._curl_lock:
                try:
                    response = self._collect(context, failed_auth)
                except pycurl.error as exc:
                    raise ovirtsdk4.Error(f"Error while sending HTTP request: {exc}") from None
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

    def _collect(self, context: Any, failed_auth: bool) -> Any:
        """The answer to `context`'s request (the SDK's wait, with the two fixes above)."""
        handle = context[0]
        limit = self.wait_limit
        deadline = time.monotonic() + limit
        while True:
            failed = self._failed_transfers.pop(handle, None)
            if failed is not None:
                code, message = failed
                raise _curl_failure(code, message)
            while self._multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, done, errors = self._multi.info_read()
                self._curls.update(done)
                for other, code, message in errors:
                    self._failed_transfers[other] = (code, message)
                    _remove_quietly(self._multi, other)
                if handle in self._failed_transfers:
                    break
                if handle in self._curls:
                    self._curls.discard(handle)
                    self._multi.remove_handle(handle)
                    response = self._read_reponse(context)
                    if response.code == 401 and not failed_auth:
                        # An expired SSO token: log in again and resend, once (as the SDK does).
                        self._sso_token = self._get_access_token()
                        return self._collect(self._Connection__send(context[3]), True)
                    return response
                if queued == 0:
                    break
            if handle in self._failed_transfers:
                continue
            if time.monotonic() > deadline:
                _remove_quietly(self._multi, handle)
                raise ovirtsdk4.TimeoutError(
                    f"Error while sending HTTP request: (28, 'no answer within {limit:g}s')")
            # As long as libcurl asks (its timer), at most a second: a select on the sockets alone
            # misses what libcurl already holds (the end of an answer read ahead into the TLS
            # buffer) and sat out the whole second at the end of a large list.
            pause = self._multi.timeout()
            if pause == 0:
                continue
            if self._multi.select(1.0 if pause < 0 else min(pause / 1000.0, 1.0)) == -1:
                # Nothing to wait on (the transfer is gone from the multi handle): do not spin.
                time.sleep(0.01)

    def _get_sso_response(self, url: str, params: Any = "") -> Any:
        """An SSO request (login, logout) bounded like an API request."""
        curl = pycurl.Curl()
        try:
            curl.setopt(pycurl.CUSTOMREQUEST, "POST")
            curl.setopt(pycurl.URL, url)
            if self._url.startswith("https"):
                curl.setopt(pycurl.SSL_VERIFYPEER, 0 if self._insecure else 1)
                curl.setopt(pycurl.SSL_VERIFYHOST, 0 if self._insecure else 2)
                if self._ca_file is not None:
                    curl.setopt(pycurl.CAINFO, self._ca_file)
            if self._timeout:
                curl.setopt(pycurl.TIMEOUT, self._timeout)
                curl.setopt(pycurl.CONNECTTIMEOUT, min(self._timeout, 30))
            curl.setopt(pycurl.HTTPHEADER, [b"Accept: application/json"])
            curl.setopt(pycurl.COPYPOSTFIELDS, urlencode(params))
            body = io.BytesIO()
            curl.setopt(pycurl.WRITEFUNCTION, body.write)
            curl.perform()
        except pycurl.error as exc:
            code = exc.args[0] if exc.args else None
            cls = (ovirtsdk4.TimeoutError if code == pycurl.E_OPERATION_TIMEDOUT
                   else ovirtsdk4.ConnectionError if code in (pycurl.E_COULDNT_CONNECT,
                                                              pycurl.E_COULDNT_RESOLVE_HOST)
                   else ovirtsdk4.Error)
            raise cls(f"Error while sending HTTP request: {exc}") from None
        finally:
            curl.close()
        try:
            return json.loads(body.getvalue().decode("utf-8"))
        except ValueError:
            raise ovirtsdk4.AuthError(f"the SSO service at {url} did not answer with JSON") \
                from None


@dataclass(frozen=True)
class SiblingConnection:
    """The settings of a `CountingConnection` and its SSO token (see `CountingConnection.sibling`)."""

    settings: dict[str, Any]
    token: str = field(repr=False)

    def open(self) -> CountingConnection:
        """A new connection using the token: no login of its own. Close it with `logout=False`,
        or the token it shares would be revoked under its owner."""
        return CountingConnection(token=self.token, **self.settings)


def _curl_failure(code: int, message: str) -> ovirtsdk4.Error:
    """The SDK's error for a failed transfer, as its own wait would have raised it."""
    text = f"Error while sending HTTP request: ({code}, {message!r})"
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return ovirtsdk4.TimeoutError(text)
    if code in (pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_HOST):
        return ovirtsdk4.ConnectionError(text)
    return ovirtsdk4.Error(text)


def _remove_quietly(multi: Any, handle: Any) -> None:
    try:
        multi.remove_handle(handle)
    except pycurl.error:
        pass


# A password file holds one line; anything larger is the wrong file (or /dev/zero).
MAX_PASSWORD_FILE_BYTES = 64 * 1024


def resolve_password(engine: EngineSpec) -> str:
    """The engine password from the environment variable or file the spec names.

    A password file must be a regular file (after links) that others cannot read, as OpenSSH
    insists for private keys; it is read with a size bound."""
    if engine.password_env:
        value = os.environ.get(engine.password_env)
        if not value:
            raise EngineError(f"engine password: environment variable {engine.password_env} "
                              "is not set or empty (engine.passwordFrom.env)")
        return value
    if engine.password_file:
        return _password_from_file(Path(engine.password_file).expanduser())
    raise EngineError("engine password: the spec names no source (engine.passwordFrom.env or "
                      "engine.passwordFrom.file)")


def _password_from_file(path: Path) -> str:
    where = f"engine password: file {path} (engine.passwordFrom.file)"
    try:
        # Non-blocking: opening a FIFO to read would otherwise wait for a writer for ever.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise EngineError(f"{where} is not a regular file")
            if info.st_mode & stat.S_IROTH:
                raise EngineError(f"{where} is readable by every user: chmod o-r {path} "
                                  "(in Kubernetes, mount the secret with defaultMode: 0400)")
            raw = fh.read(MAX_PASSWORD_FILE_BYTES + 1)
    except OSError as exc:
        raise EngineError(f"{where}: cannot read it: {exc.strerror}") from None
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise EngineError(f"{where} is larger than {MAX_PASSWORD_FILE_BYTES // 1024} KiB: "
                          "not a password file")
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise EngineError(f"{where} is not UTF-8 text") from None
    if not value:
        raise EngineError(f"{where} is empty")
    return value


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
    if engine.insecure:
        # Said on every run, not only when the spec was written: nothing is verified.
        _log.warning("engine.tls_unverified", url=url,
                     why="engine.insecure is true: the engine's certificate is not checked, so "
                         "the password can go to whoever answers at this address")
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
