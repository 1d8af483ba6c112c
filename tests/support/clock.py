"""A clock that moves only when the test says so, for the lab server's `clock=` seam.

`sleep` advances it at once instead of waiting, so the latency fault adds time to the request log
without slowing the test, and a token expires exactly when the test advances past its lifetime.
"""
from __future__ import annotations

import threading


class ManualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)


__all__ = ["ManualClock"]
