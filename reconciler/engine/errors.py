"""One family of engine errors, decided once at the SDK boundary.

Whether another attempt may help is the error's type, not a predicate callers re-evaluate:

    EngineError                      any engine failure (reconciler.errors)
    +-- EngineTransient              another attempt may cure it: 5xx, a dropped or timed-out
    |                                connection, a 409 that only says "busy"; `delay` hints how
    |                                long to wait first (None: the retry policy decides)
    +-- EngineUnavailable            transient failures went on past the retry budget
    +-- EngineRefused                the engine answered no, and asking again will not change it
        +-- PreconditionFailed       409: a state the caller must change first (VM not down)
        +-- NotFoundOnEngine         404: the host, VM or device does not exist

`classify(exc, what)` turns an SDK exception into one of these; `reconciler.engine.retry.retry`
is the one loop that acts on them. Messages never carry credentials (the SDK puts none in its
errors) and never a raw library object's text.
"""
from __future__ import annotations

import re

import ovirtsdk4

from reconciler.errors import EngineError

# libcurl codes that mean the TLS peer could not be verified: never transient, always explained.
_TLS_CURL_CODES = frozenset({35, 51, 53, 54, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91})
# libcurl codes worth another try: connect refused, timeout, empty reply, send/recv failure, ...
_TRANSIENT_CURL_CODES = frozenset({7, 18, 28, 52, 55, 56, 92})
_CURL_CODE = re.compile(r"\(<?[^,]*?,?\s*(\d+),")
# The SDK puts the pycurl handle's repr in some messages: `(<pycurl.Curl object at 0x...>, 7, ...)`.
_CURL_OBJECT = re.compile(r"<pycurl\.Curl object at 0x[0-9a-fA-F]+>,?\s*")
# A 409 that only says "not now": the engine is busy with a related operation or the entity is
# locked. Other 409s (VM status illegal, not pinned) are real refusals and are not retried.
_BUSY = re.compile(r"busy|locked|in progress|try again later", re.IGNORECASE)
# libcurl's own words for its codes, for messages a user reads.
_CURL_WORDS = {6: "the engine's host name does not resolve", 7: "connection refused",
               18: "the answer was cut short", 28: "the request timed out",
               52: "the engine closed the connection without answering",
               55: "sending the request failed", 56: "the connection was dropped"}


class EngineTransient(EngineError):
    """An engine failure another attempt may cure; `delay` is a hint in seconds, or None."""

    def __init__(self, message: str, *, code: int | None = None, detail: str | None = None,
                 delay: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail
        self.delay = delay


class EngineUnavailable(EngineError):
    """Transient failures went on past the retry budget; `last` is the final one."""

    def __init__(self, message: str, last: EngineTransient | None = None) -> None:
        super().__init__(message)
        self.last = last
        self.code = last.code if last is not None else None
        self.detail = last.detail if last is not None else None


class EngineRefused(EngineError):
    """The engine answered with an error that retrying cannot fix."""

    def __init__(self, message: str, *, code: int | None = None,
                 detail: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class PreconditionFailed(EngineRefused):
    """HTTP 409 for a state the caller must change first (VM not down, host not in maintenance)."""


class NotFoundOnEngine(EngineRefused):
    """The named host, VM or device does not exist on the engine."""


def curl_code(exc: BaseException) -> int | None:
    """The libcurl error code an SDK error carries in its message, if any."""
    match = _CURL_CODE.search(str(exc))
    return int(match.group(1)) if match else None


def clean_text(exc: BaseException) -> str:
    """An SDK error's text without library object reprs (pycurl handles)."""
    text = _CURL_OBJECT.sub("", str(exc)).strip()
    code = curl_code(exc)
    if code is not None and code in _CURL_WORDS:
        return f"{_CURL_WORDS[code]} (curl error {code})"
    return text or type(exc).__name__


def fault_detail(exc: BaseException) -> str:
    """The engine's fault detail (or reason) when it sent one, else the cleaned error text."""
    fault = getattr(exc, "fault", None)
    if fault is not None and (getattr(fault, "detail", None) or getattr(fault, "reason", None)):
        return str(fault.detail or fault.reason or "").strip().strip("[]")
    return clean_text(exc)


def classify(exc: BaseException, what: str, url: str | None = None) -> EngineError:
    """The engine error for a failure of `what` ("list hosts", "start VM vdi-01").

    An `EngineError` passes through unchanged; an SDK error becomes transient or refused;
    anything else (a bug in our own code) is not an engine error and is not classified.
    """
    if isinstance(exc, EngineError):
        return exc
    where = f" ({url})" if url else ""
    code = getattr(exc, "code", None)
    detail = fault_detail(exc)
    if isinstance(exc, ovirtsdk4.AuthError):
        return EngineRefused(f"the engine refused the credentials{where}: {clean_text(exc)}",
                             code=code, detail=detail)
    curl = curl_code(exc)
    if curl in _TLS_CURL_CODES:
        return EngineRefused(f"TLS verification of the engine failed{where}: {clean_text(exc)}. "
                             "Check that engine.caFile holds the CA that signed the engine's "
                             "certificate", detail=detail)
    if isinstance(exc, ovirtsdk4.NotFoundError) or code == 404:
        return NotFoundOnEngine(f"cannot {what}: not found on the engine", code=code,
                                detail=detail)
    message = f"cannot {what}{where}: {detail}" + (f" (HTTP {code})" if code else "")
    if isinstance(exc, ovirtsdk4.ConnectionError | ovirtsdk4.TimeoutError):
        return EngineTransient(message, code=code, detail=detail)
    if code is not None:
        if code >= 500 or (code == 409 and _BUSY.search(detail or str(exc))):
            return EngineTransient(message, code=code, detail=detail)
        if code == 409:
            return PreconditionFailed(f"engine refused to {what}: {detail} (HTTP 409)",
                                      code=code, detail=detail)
        return EngineRefused(f"engine refused to {what}: {detail} (HTTP {code})", code=code,
                             detail=detail)
    if curl is not None and curl in _TRANSIENT_CURL_CODES:
        return EngineTransient(message, detail=detail)
    return EngineRefused(message, code=code, detail=detail)


__all__ = ["EngineError", "EngineRefused", "EngineTransient", "EngineUnavailable",
           "NotFoundOnEngine", "PreconditionFailed", "classify", "clean_text", "curl_code",
           "fault_detail"]
