"""wait_until and Backoff: deadlines, capped growth, terminal failures."""
from __future__ import annotations

import random

import pytest

from reconciler.apply.waiting import WaitTimeout, wait_until
from reconciler.engine.retry import Backoff
from reconciler.errors import ApplyError


class FakeClock:
    """Time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_first_value_that_matches() -> None:
    values = iter(["installing", "reboot", "maintenance", "up"])
    clock = FakeClock()
    got = wait_until(lambda: next(values), lambda s: s == "maintenance", 60, 1.0, "maintenance",
                     clock=clock, sleep=clock.sleep)
    assert got == "maintenance"
    assert len(clock.sleeps) == 2


def test_already_reached_state_is_accepted_even_with_zero_timeout() -> None:
    clock = FakeClock()
    assert wait_until(lambda: 5, lambda v: v == 5, 0, 1.0, "five", clock=clock,
                      sleep=clock.sleep) == 5
    assert clock.sleeps == []


def test_timeout_names_the_last_state() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout) as info:
        wait_until(lambda: "reboot", lambda s: s == "up", 30, 1.0, "host up", clock=clock,
                   sleep=clock.sleep)
    assert "timed out after 30s waiting for host up" in str(info.value)
    assert "'reboot'" in str(info.value)
    assert info.value.last == "reboot"
    assert isinstance(info.value, ApplyError)
    assert clock.now == pytest.approx(30)


def test_poll_interval_grows_and_is_capped() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        wait_until(lambda: 0, lambda v: False, 100, Backoff(initial=1, cap=4, jitter=0),
                   "never", clock=clock, sleep=clock.sleep)
    assert clock.sleeps[:5] == [1, 2, 4, 4, 4]
    assert max(clock.sleeps) == 4


def test_last_sleep_never_overshoots_the_deadline() -> None:
    clock = FakeClock()
    with pytest.raises(WaitTimeout):
        wait_until(lambda: 0, lambda v: False, 5, Backoff(initial=4, cap=4, jitter=0), "x",
                   clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [4, 1]


def test_describe_callable_and_custom_error_class() -> None:
    class Gone(WaitTimeout):
        pass

    clock = FakeClock()
    with pytest.raises(Gone) as info:
        wait_until(lambda: {"status": "non_responsive"}, lambda v: False, 3, 1.0,
                   lambda v: f"host stayed {v['status'] if v else None}", error=Gone,
                   clock=clock, sleep=clock.sleep)
    assert str(info.value) == "host stayed non_responsive"


def test_fail_stops_at_once() -> None:
    clock = FakeClock()
    values = iter(["installing", "install_failed", "maintenance"])
    with pytest.raises(ApplyError, match="install failed"):
        wait_until(lambda: next(values), lambda s: s == "maintenance", 60, 1.0, "m",
                   fail=lambda s: ApplyError("install failed") if s == "install_failed" else None,
                   clock=clock, sleep=clock.sleep)
    assert len(clock.sleeps) == 1


def test_jitter_stays_within_bounds() -> None:
    delays = Backoff(initial=1, cap=8, jitter=0.5).delays(random.Random(7))
    got = [next(delays) for _ in range(10)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8, 8, 8]
    assert all(c * 0.5 <= d <= c for d, c in zip(got, ceilings))
    assert len(set(got)) > 1


@pytest.mark.parametrize("kwargs", [dict(initial=-1), dict(initial=5, cap=1), dict(factor=0.5),
                                    dict(jitter=2)])
def test_invalid_backoff_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)
