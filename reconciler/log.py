"""structlog setup: a console renderer on a TTY, JSON lines otherwise. Logs go to stderr.

Colour only on a terminal and never with NO_COLOR set (https://no-color.org), for logs as for
plans. Logs are written to whatever `sys.stderr` is at that moment, so a live progress display
that takes stderr over prints them above itself instead of being drawn over."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Literal, TextIO

import structlog

LogFormat = Literal["auto", "console", "json"]

# Keys whose values are never rendered, whatever logs them.
_SECRET_KEYS = frozenset({"password", "token", "access_token", "authorization", "secret"})


def _redact(_logger: object, _name: str, event: dict) -> dict:
    for key in list(event):
        if key.lower() in _SECRET_KEYS:
            event[key] = "***"
    return event


def use_color(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """True for a terminal when NO_COLOR is not set."""
    env = os.environ if environ is None else environ
    if "NO_COLOR" in env:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _CurrentStderr:
    """`sys.stderr` as it is when a line is written, not when logging was configured."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer = (structlog.dev.ConsoleRenderer(colors=use_color(sys.stderr))
                if fmt == "console" else structlog.processors.JSONRenderer(sort_keys=True))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name) if name else structlog.get_logger()
