"""The lab engine's HTTP(S) server: SSO, the REST API, fault injection and a request log.

Plain stdlib `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive; TLS (a lab CA made by
`tls.py`) unless plain HTTP is asked for. The TLS handshake runs in the connection's own thread so a
slow client never stalls the accept loop.
"""
from __future__ import annotations

import gzip
import json
import secrets
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from reconciler.errors import ReconcilerError
from reconciler_lab.api import LabApi
from reconciler_lab.engine import LabEngine
from reconciler_lab.errors import EngineFault
from reconciler_lab.faults import FaultConfig, FaultDice
from reconciler_lab.records import LabFleet
from reconciler_lab.render import Renderer, fault_xml
from reconciler_lab.tls import ensure_tls
from reconciler_lab.xmlform import DECLARATION

SSO_TOKEN = "/ovirt-engine/sso/oauth/token"
SSO_LOGOUT = "/ovirt-engine/services/sso-logout"
API_PREFIX = "/ovirt-engine/api"
# A lab extension beside the oVirt API (reconciler_lab/sharing.py): another process using this lab
# asks it to create a host's root tree, so the engine's bookkeeping of new roots stays here.
LAB_HOST_ROOTS = "/ovirt-engine/lab/host-roots/"
DEFAULT_TOKEN_TTL = 3600.0
# A stalled request is held this long at most (or until the lab stops).
STALL_SECONDS = 3600.0
_GZIP_MIN = 4096
_SLICE = 1 << 20                # characters encoded and compressed at a time
_STREAM_MIN = 1 << 20           # characters: a larger gzip answer is sent as it is compressed
_CHUNK = 1 << 16                # compressed bytes per HTTP chunk, at least (but the last)


def _gzip_parts(pieces: tuple[str, ...]) -> Iterator[bytes]:
    """The gzip stream of the pieces' UTF-8, in parts of _CHUNK bytes or more (the last may be
    shorter). Encoded and compressed a slice at a time: a 1,000-host list is ~60 MB, and a whole
    copy of it (the declaration put in front, the encoded bytes) took longer than compressing it."""
    packer = zlib.compressobj(1, zlib.DEFLATED, 31)   # wbits 31: a gzip stream
    ready: list[bytes] = []
    size = 0
    for piece in pieces:
        for at in range(0, len(piece), _SLICE):
            out = packer.compress(piece[at:at + _SLICE].encode("utf-8"))
            ready.append(out)
            size += len(out)
            if size >= _CHUNK:
                yield b"".join(ready)
                ready.clear()
                size = 0
    ready.append(packer.flush())
    yield b"".join(ready)


def _encode(pieces: tuple[str, ...], gzip_ok: bool) -> tuple[bytes, bool]:
    """The UTF-8 body made of `pieces`, gzip-compressed when the client accepts it and it has
    _GZIP_MIN bytes or more; True when compressed."""
    if not gzip_ok or sum(len(p) for p in pieces) < _GZIP_MIN:
        # Fewer characters than _GZIP_MIN may still be as many bytes (non-ASCII text).
        data = "".join(pieces).encode("utf-8")
        if gzip_ok and len(data) >= _GZIP_MIN:
            return gzip.compress(data, compresslevel=1), True
        return data, False
    return b"".join(_gzip_parts(pieces)), True


class LabError(ReconcilerError):
    """The lab could not start or was misused."""


class Clock(Protocol):
    """The server's time: SSO token lifetimes, the latency fault and the request log's timings.

    The engine's staged operations (host cycles, VM starts) keep to real time scaled by
    `time_scale`; this clock is separate so a test can expire a token or add latency by moving
    time on instead of sleeping.
    """

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Real time (`time.monotonic`, `time.sleep`): the default."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    query: str
    status: int          # 0: the connection was dropped without an answer
    seconds: float
    bytes_sent: int


def _load_fleet(fleet: LabFleet | str | Path) -> LabFleet:
    if isinstance(fleet, LabFleet):
        return fleet
    from reconciler_lab import fleet as fleet_mod
    loader = getattr(fleet_mod, "load_fleet", None)
    if loader is None:
        raise LabError("fleet files cannot be loaded yet (reconciler_lab.fleet.load_fleet is "
                       "missing); pass a LabFleet")
    return loader(fleet)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], lab: LabServer, ctx: ssl.SSLContext | None) -> None:
        self.lab = lab
        self.ssl_context = ctx
        # Open client connections: a stopped engine drops them all, keep-alive ones included.
        self.open_sockets: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(addr, _Handler)

    def drop_connections(self) -> None:
        with self.open_lock:
            sockets = list(self.open_sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Headers and body go out in separate writes; without TCP_NODELAY the second waits
        # for the client's delayed ACK (~40 ms on every request).
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self.ssl_context is not None:
            try:
                request.settimeout(30)
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return   # a client that does not trust our CA hangs up during the handshake
        # Tracked after wrapping: TLS takes the file descriptor over from the plain socket.
        with self.open_lock:
            self.open_sockets.add(request)
        try:
            self.RequestHandlerClass(request, client_address, self)  # type: ignore[arg-type]
        finally:
            with self.open_lock:
                self.open_sockets.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass   # client resets are normal under fault injection; never print tracebacks


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _drop = False

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        self._start = self.server.lab.clock.now()
        self._drop = False
        self._recorded = False
        split = urlsplit(self.path)
        path, raw_query = split.path.rstrip("/") or "/", split.query
        self._log_path, self._log_query = path, raw_query
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            if path == SSO_TOKEN:
                self._sso_token(body)
            elif path == SSO_LOGOUT:
                self._sso_logout(body)
            elif path == API_PREFIX or path.startswith(API_PREFIX + "/"):
                self._api(path[len(API_PREFIX):], query, body)
            elif path.startswith(LAB_HOST_ROOTS) and self.command == "POST":
                self._host_root(unquote(path[len(LAB_HOST_ROOTS):]))
            else:
                self._send(404, "")   # the engine's answer to an unknown path has no body
        finally:
            self._record(0, 0)   # dropped, or failed before answering
            if self._drop:
                # Hang up only after the record exists, so a client that sees the reset can
                # already find it in the log.
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    # --- responses

    def _record(self, status: int, sent: int) -> None:
        if not self._recorded:
            self._recorded = True
            self.server.lab._record(RequestRecord(self.command, self._log_path, self._log_query,
                                                  status, self.server.lab.clock.now() - self._start,
                                                  sent))

    def _send(self, status: int, body: str | tuple[str, ...],
              content_type: str = "application/xml") -> tuple[int, int]:
        """Answer with `body` (a collection: its pieces, in order)."""
        pieces = (body,) if isinstance(body, str) else body
        if content_type == "application/xml" and any(pieces):
            pieces = (DECLARATION, *pieces)   # JAXB starts every document with it
        gzip_ok = "gzip" in (self.headers.get("Accept-Encoding") or "")
        if gzip_ok and sum(len(p) for p in pieces) >= _STREAM_MIN:
            return self._send_streamed(status, pieces, content_type)
        data, compressed = _encode(pieces, gzip_ok)
        headers = {"Content-Type": f"{content_type};charset=UTF-8"} if data else {}
        if compressed:
            headers["Content-Encoding"] = "gzip"
        # Record before answering: a client that has the answer can already find it in the log.
        self._record(status, len(data))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return status, len(data)

    def _send_streamed(self, status: int, pieces: tuple[str, ...],
                       content_type: str) -> tuple[int, int]:
        """A large answer sent in chunks as it is compressed (HTTP/1.1 chunked transfer), so the
        client reads the first objects of a 1,000-host list while the lab compresses the rest.

        Recorded before the last chunk: a client that has the whole answer can find it in the
        log. Its time leaves out the time spent waiting for the client to take the chunks.
        """
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type};charset=UTF-8")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        clock = self.server.lab.clock
        sent, waited = 0, 0.0
        parts = _gzip_parts(pieces)
        data = next(parts)
        for following in parts:
            started = clock.now()
            self._write_chunk(data)
            waited += clock.now() - started
            sent += len(data)
            data = following
        sent += len(data)
        self._start += waited
        self._record(status, sent)
        self._write_chunk(data)
        self.wfile.write(b"0\r\n\r\n")
        return status, sent

    def _write_chunk(self, data: bytes) -> None:
        if data:   # an empty chunk would end the answer
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data))

    def _json(self, status: int, obj: dict[str, Any]) -> tuple[int, int]:
        return self._send(status, json.dumps(obj), "application/json")

    # --- SSO

    def _stall(self) -> tuple[int, int]:
        """Hold the request open without an answer (until the lab stops), then hang up."""
        self.server.lab._stopping.wait(STALL_SECONDS)
        self.close_connection = True
        self._drop = True
        return 0, 0

    def _sso_token(self, body: bytes) -> tuple[int, int]:
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        lab = self.server.lab
        if lab.faults.sso_stall:
            return self._stall()
        if form.get("grant_type") != "password":
            return self._json(400, {"error": "unsupported_grant_type",
                                    "error_description": "Only the password grant is supported."})
        user, password = form.get("username", ""), form.get("password", "")
        if not (secrets.compare_digest(user, lab.username)
                and secrets.compare_digest(password, lab.password)):
            return self._json(401, {"error": "access_denied",
                                    "error_description": f"Cannot authenticate user '{user}': "
                                    "The username or password is incorrect."})
        token, expires = lab._issue_token()
        return self._json(200, {"access_token": token, "scope": form.get("scope", "ovirt-app-api"),
                                "exp": str(int(expires * 1000)), "token_type": "bearer"})

    def _sso_logout(self, body: bytes) -> tuple[int, int]:
        if self.server.lab.faults.sso_stall:
            return self._stall()
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        self.server.lab._revoke_token(form.get("token", ""))
        return self._json(200, {})

    # --- lab extension

    def _host_root(self, name: str) -> tuple[int, int]:
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        lab = self.server.lab
        if not lab._token_valid(token):
            return self._json(401, {"error": "the token is missing, invalid or expired"})
        try:
            return self._json(200, {"root": str(lab.host_root(name))})
        except LabError:
            return self._json(404, {"error": f"no host named {name!r}"})

    # --- API

    def _api(self, path: str, query: dict[str, str], body: bytes) -> tuple[int, int]:
        lab = self.server.lab
        faults = lab.faults
        if faults.latency_ms:
            lab.clock.sleep(faults.latency_ms / 1000.0)
        roll = lab._dice.roll()
        if roll == "stall":
            return self._stall()
        if roll == "drop":
            self.close_connection = True
            self._drop = True
            return 0, 0
        if roll == "error":
            return self._send(503, fault_xml("Operation Failed", "Injected lab fault: the "
                                             "engine is temporarily unavailable."))
        auth = self.headers.get("Authorization") or ""
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        if not lab._token_valid(token):
            return self._send(401, fault_xml("Unauthorized", "The token is missing, invalid "
                                             "or expired."))
        cid = self.headers.get("Correlation-Id") or query.get("correlation_id")
        if cid:
            cid = "".join(ch for ch in cid if ch.isalnum() or ch in "_-") or None
        reply = lab.api.handle(self.command, path, query, body, cid)
        return self._send(reply.status, reply.body)


class LabServer:
    """An oVirt engine simulator reachable by the real ovirtsdk4 (see docs/lab.md)."""

    def __init__(self, fleet: LabFleet | str | Path, state_dir: Path, port: int = 0,
                 tls: bool = True, faults: FaultConfig | None = None, time_scale: float = 0.01,
                 password: str | None = None, clock: Clock | None = None,
                 warm: bool = True) -> None:
        self.fleet = _load_fleet(fleet)
        self.state_dir = Path(state_dir)
        self.port = port
        self.tls = tls
        self.faults = faults or FaultConfig()
        self.time_scale = time_scale
        self.clock: Clock = clock or SystemClock()
        # Serialise the fleet in the background after start (False: the first requests pay it,
        # as the first reads of a real engine pay its own work).
        self.warm = warm
        self.username = self.fleet.username
        self.password = password if password is not None else self.fleet.password
        self._dice = FaultDice(self.faults)
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._token_lock = threading.Lock()
        self._httpd: _Server | None = None
        self._warm_stop = threading.Event()
        self._stopping = threading.Event()       # ends stalled requests
        self._warm_thread: threading.Thread | None = None
        self._thread: threading.Thread | None = None
        self.engine: LabEngine | None = None
        self.api: LabApi
        self.ca_file: Path | None = None

    # --- lifecycle

    def start(self) -> LabServer:
        self._stopping.clear()
        if self._httpd is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ctx = None
        if self.tls:
            files = ensure_tls(self.state_dir / "tls")
            self.ca_file = files.ca_cert
            ctx = files.server_context()
        try:
            self.engine = LabEngine(self.fleet, self.state_dir, time_scale=self.time_scale,
                                    faults=self.faults)
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"lab state in {self.state_dir} is unreadable ({exc}); "
                           "run `reconcile lab reset`") from None
        self.api = LabApi(self.engine)
        try:
            self._httpd = _Server(("127.0.0.1", self.port), self, ctx)
        except OSError as exc:
            raise LabError(f"cannot listen on 127.0.0.1:{self.port}: {exc.strerror}") from None
        self.port = self._httpd.server_address[1]
        self.engine.start()
        self._warm_stop.clear()
        if self.warm:
            self._warm_thread = threading.Thread(target=self.api.render.warm,
                                                 args=(self._warm_stop,), name="lab-warm",
                                                 daemon=True)
            self._warm_thread.start()
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.1}, name="lab-http",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._warm_stop.set()
        if self._warm_thread is not None:
            self._warm_thread.join(timeout=10)
            self._warm_thread = None
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.drop_connections()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.engine is not None:
            self.engine.stop()

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- public surface

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{API_PREFIX}"

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._log)

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Wait until the background serialisation of the fleet finished (benchmarks use it);
        True at once for a lab started with warm=False."""
        thread = self._warm_thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def drop_cache(self) -> None:
        """Forget every object serialised so far, as a restarted lab would: the next reads pay
        for serialising again (benchmarks measure cold reads with it). Nothing else changes."""
        engine = self._engine()
        with engine.lock:
            self.api.render = Renderer(engine)

    def clear_request_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def host_root(self, name: str) -> Path:
        try:
            return self._engine().host_root(name)
        except EngineFault:
            raise LabError(f"the lab has no host named {name!r}") from None

    def _engine(self) -> LabEngine:
        if self.engine is None:
            raise LabError("the lab is not started")
        return self.engine

    # --- internals used by the handler

    def _record(self, rec: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(rec)

    def _issue_token(self) -> tuple[str, float]:
        ttl = self.faults.token_ttl if self.faults.token_ttl is not None else DEFAULT_TOKEN_TTL
        token = secrets.token_urlsafe(32)
        with self._token_lock:
            self._tokens[token] = self.clock.now() + ttl
        return token, time.time() + ttl

    def _revoke_token(self, token: str) -> None:
        with self._token_lock:
            self._tokens.pop(token, None)

    def _token_valid(self, token: str) -> bool:
        if not token:
            return False
        with self._token_lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return False
            if expiry <= self.clock.now():
                del self._tokens[token]
                return False
            return True
