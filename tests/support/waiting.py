"""Bounded waits for a condition: poll until it holds, or fail after a generous ceiling.

Tests wait for conditions, never for durations, and never assert how long something took: a loaded
machine may only make a wait longer, not a test wrong. The ceiling exists so that a broken run ends
with a message instead of hanging; it is no speed claim (speed figures live in `benchmarks/`).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Far above anything a condition needs on an idle machine (the lab runs at a small time scale):
# reaching it means the condition will not hold, not that the machine was slow.
CEILING = 60.0


def wait_for(predicate: Callable[[], T], timeout: float = CEILING, *, every: float = 0.02,
             what: str = "the condition") -> T:
    """Call `predicate` until it returns something truthy and return that; AssertionError naming
    `what` and the last value once `timeout` seconds have passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}; "
                                 f"last: {value!r}")
        time.sleep(every)


__all__ = ["CEILING", "wait_for"]
