"""The one retry loop: transient failures retried with capped backoff, the others raised at once,
a change that landed although its reply was lost never sent twice."""
from __future__ import annotations

import random

import ovirtsdk4
import pytest

from reconciler.engine.errors import (EngineRefused, EngineUnavailable, PreconditionFailed)
from reconciler.engine.retry import Backoff, Timing, retry
from reconciler.errors import EngineError

FAST = Timing(retry=Backoff(initial=1.0, cap=1.5, jitter=0.5), attempts=3)


class Flaky:
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_retries_then_succeeds_with_growing_capped_delays():
    slept = []
    fn = Flaky([ovirtsdk4.Error("x", code=500), ovirtsdk4.Error("x", code=502)])
    assert retry(fn, "list hosts", timing=FAST, sleep=slept.append,
                 rng=random.Random(1)) == "ok"
    assert fn.calls == 3 and len(slept) == 2
    assert all(0 <= s <= 1.5 for s in slept)


def test_gives_up_after_the_attempts_with_the_last_failure():
    fn = Flaky([ovirtsdk4.Error("down", code=503)] * 5)
    with pytest.raises(EngineUnavailable) as err:
        retry(fn, "list hosts", timing=FAST, sleep=lambda s: None)
    assert fn.calls == 3 and err.value.code == 503
    assert isinstance(err.value, EngineError)
    assert str(err.value).startswith("cannot list hosts: the engine kept failing after 3 attempts")


def test_a_refusal_is_not_retried():
    fn = Flaky([ovirtsdk4.Error("bad", code=400)])
    with pytest.raises(EngineRefused):
        retry(fn, "update host", timing=FAST, sleep=lambda s: None)
    assert fn.calls == 1


def test_a_change_that_landed_is_not_sent_again():
    sent = []

    def change():
        sent.append(1)
        raise ovirtsdk4.Error("Failed to read response: [(<pycurl.Curl object at 0x7f>, 52, "
                              "'Empty reply from server')]")
    assert retry(change, "add a mediated device", timing=FAST, sleep=lambda s: None,
                 landed=lambda: True) is None
    assert len(sent) == 1


def test_every_failed_attempt_is_seen_for_metrics():
    seen = []
    fn = Flaky([ovirtsdk4.Error("x", code=503), ovirtsdk4.Error("x", code=409)])
    with pytest.raises(PreconditionFailed):
        retry(fn, "start vm", timing=FAST, sleep=lambda s: None, on_failure=seen.append)
    assert [type(e).__name__ for e in seen] == ["EngineTransient", "PreconditionFailed"]


def test_backoff_is_capped_exponential_with_jitter_taken_off():
    backoff = Backoff(initial=0.5, cap=3.0, jitter=0.5)
    delays = [d for d, _ in zip(backoff.delays(random.Random(0)), range(5))]
    bounds = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(b / 2 <= d <= b for d, b in zip(delays, bounds))
    assert [Backoff(1.0, 5.0, jitter=0.0).delay(n) for n in range(5)] == [0.0, 1.0, 2.0, 4.0, 5.0]


def test_a_scaled_timing_keeps_its_attempts_and_shrinks_its_waits():
    lab = Timing().scaled(0.01)
    assert lab.attempts == Timing().attempts
    assert lab.retry.cap == pytest.approx(Timing().retry.cap * 0.01)
    assert lab.poll.initial == pytest.approx(Timing().poll.initial * 0.01)
    # A request's round trip does not run faster with the lab's clock.
    assert lab.verify_timeout == 5.0
    with pytest.raises(ValueError):
        Timing().scaled(0)
