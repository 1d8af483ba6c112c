"""The one backoff and the one retry loop for engine requests.

`Backoff` is a capped exponential schedule with jitter; the request retries, the status polls of
the apply operations and the controller's pass and apply backoff all draw their delays from it.
`retry()` calls a request, classifies a failure once (`reconciler.engine.errors.classify`) and
retries only `EngineTransient`, at most `Timing.attempts` times in all. For a change whose reply
may have been lost, `landed()` re-reads the engine before each repeat, so a dropped answer never
doubles an add.

`Timing` is the policy an engine endpoint carries: a real engine gets `DEFAULT_TIMING`; the lab,
whose simulated seconds pass faster, gets the same policy `scaled` by its time scale (the same
number of attempts, shorter waits).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TypeVar

import ovirtsdk4

from reconciler.engine.errors import (EngineError, EngineTransient, EngineUnavailable, classify)
from reconciler.log import get_logger

R = TypeVar("R")

_log = get_logger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Delays `initial * factor**n`, capped at `cap`; `jitter` is the random fraction taken off."""

    initial: float = 1.0
    cap: float = 10.0
    factor: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.initial < 0 or self.cap < self.initial or self.factor < 1 or not 0 <= self.jitter <= 1:
            raise ValueError(f"invalid backoff {self!r}")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The delay after the `attempt`-th consecutive failure (1-based); 0 for attempt 0."""
        if attempt <= 0:
            return 0.0
        base = min(self.cap, self.initial * self.factor ** (attempt - 1))
        if not self.jitter:
            return float(base)
        return base * (1 - self.jitter * (rng or random).random())

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """An endless sequence of delays; jitter spreads retries of many clients apart."""
        attempt = 0
        while True:
            attempt += 1
            yield self.delay(attempt, rng)

    def scaled(self, factor: float) -> Backoff:
        return replace(self, initial=self.initial * factor, cap=self.cap * factor)


# Request round trips do not pass faster on a lab whose clock runs fast: a plain change is
# given at least this long to become visible, whatever the scale.
_MIN_VERIFY_TIMEOUT = 5.0


@dataclass(frozen=True)
class Timing:
    """How to retry requests and pace polls."""

    retry: Backoff = Backoff(initial=0.5, cap=8.0, jitter=0.5)
    attempts: int = 6
    poll: Backoff = Backoff(initial=1.0, cap=10.0, jitter=0.2)
    verify_timeout: float = 60.0   # how long a plain field change may take to become visible

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.verify_timeout < 0:
            raise ValueError(f"invalid timing {self!r}")

    def scaled(self, factor: float) -> Timing:
        """The same policy for a clock that runs `1/factor` times faster (the lab's time scale):
        every wait shrinks by `factor`, the number of attempts stays."""
        if not 0 < factor <= 1:
            raise ValueError(f"time scale must be in (0, 1], not {factor}")
        return replace(self, retry=self.retry.scaled(factor), poll=self.poll.scaled(factor),
                       verify_timeout=max(self.verify_timeout * factor,
                                          min(self.verify_timeout, _MIN_VERIFY_TIMEOUT)))


DEFAULT_TIMING = Timing()


def retry(request: Callable[[], R], what: str, *, timing: Timing = DEFAULT_TIMING,
          url: str | None = None, landed: Callable[[], bool] | None = None,
          on_failure: Callable[[EngineError], None] | None = None,
          sleep: Callable[[float], None] = time.sleep,
          rng: random.Random | None = None, **log_context: object) -> R | None:
    """Call `request()`; retry `EngineTransient` failures with backoff, raise the others at once.

    `what` names the request in messages ("list hosts", "start VM vdi-01"). After the last
    attempt raises `EngineUnavailable`. With `landed`, a change that took effect although its
    reply was lost is not sent again: `retry` re-reads with `landed()` before each repeat and
    returns None when it holds. `on_failure` sees every failed attempt (for metrics).
    """
    delays = timing.retry.delays(rng)
    for attempt in range(1, timing.attempts + 1):
        try:
            return request()
        except (ovirtsdk4.Error, EngineError) as exc:
            error = classify(exc, what, url)
            if on_failure is not None:
                on_failure(error)
            if not isinstance(error, EngineTransient):
                raise error from None
            if attempt == timing.attempts:
                where = f" ({url})" if url else ""
                raise EngineUnavailable(
                    f"cannot {what}{where}: the engine kept failing after {attempt} attempts "
                    f"(last: {error.detail or error})", error) from None
            delay = error.delay if error.delay is not None else next(delays)
            _log.warning("engine.retry", what=what, attempt=attempt, of=timing.attempts,
                         delay=round(delay, 3), error=error.detail or str(error), **log_context)
            sleep(delay)
            if landed is not None and retry(landed, f"check whether {what} took effect",
                                            timing=timing, url=url, on_failure=on_failure,
                                            sleep=sleep, rng=rng):
                return None
    raise AssertionError("unreachable")  # pragma: no cover


def read(request: Callable[[], R], what: str, **kwargs: object) -> R:
    """`retry` for a read: never None (there is no `landed` short cut)."""
    result = retry(request, what, **kwargs)  # type: ignore[arg-type]
    return result  # type: ignore[return-value]


__all__ = ["Backoff", "DEFAULT_TIMING", "Timing", "read", "retry"]
