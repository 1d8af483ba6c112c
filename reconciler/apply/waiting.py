"""Polling with a deadline, paced by the one capped, jittered backoff (reconciler.engine.retry).

Engine actions such as `deactivate` or `install` return long before their effect is visible, so
every change is confirmed by re-reading until a predicate holds. Waits grow geometrically up to a
cap so that a long host reboot costs few requests while a quick change is still seen quickly.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from reconciler.engine.retry import Backoff
from reconciler.errors import ApplyError

T = TypeVar("T")


class WaitTimeout(ApplyError):
    """The awaited state was not reached in time; `last` is the last value observed."""

    def __init__(self, message: str, last: object = None) -> None:
        super().__init__(message)
        self.last = last


class WaitInterrupted(WaitTimeout):
    """A stop was requested (SIGTERM) while waiting; the awaited state was not reached."""


def wait_until(
    fetch: Callable[[], T],
    predicate: Callable[[T], bool],
    timeout: float,
    interval: float | Backoff = 1.0,
    describe: Callable[[T | None], str] | str = "the awaited state",
    *,
    fail: Callable[[T], ApplyError | None] | None = None,
    error: type[WaitTimeout] = WaitTimeout,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    stop: threading.Event | None = None,
    interruptible: Callable[[T], bool] | None = None,
) -> T:
    """Poll `fetch()` until `predicate(value)` holds and return that value.

    `fail(value)` may return an error to raise at once (a terminal bad state such as
    `install_failed`). On timeout raises `error` (a `WaitTimeout` unless given) whose message is
    `describe(last value)`; a plain string is wrapped with the timeout and, for a simple value,
    the last value seen. At least one fetch is made,
    even with a zero timeout, so an already reached state is always accepted. A set `stop`
    event ends the wait early with `WaitInterrupted`, once `interruptible(last value)` holds (a
    state the caller knows how to undo from).
    """
    backoff = interval if isinstance(interval, Backoff) else Backoff(
        initial=interval, cap=max(interval, interval * 8), jitter=0.0)
    deadline = clock() + timeout
    delays = backoff.delays()
    last: T | None = None
    while True:
        last = fetch()
        if predicate(last):
            return last
        if fail is not None:
            failure = fail(last)
            if failure is not None:
                raise failure
        remaining = deadline - clock()
        if remaining <= 0:
            break
        if stop is None:
            sleep(min(next(delays), remaining))
        elif stop.wait(min(next(delays), remaining)) and (interruptible is None
                                                           or interruptible(last)):
            what = describe if isinstance(describe, str) else "the awaited state"
            raise WaitInterrupted(f"stopped while waiting for {what}", last)
    if callable(describe):
        message = describe(last)
    else:
        message = f"timed out after {timeout:g}s waiting for {describe}"
        if isinstance(last, (str, int, float, bool)):
            message += f" (last seen: {last!r})"
    raise error(message, last)
