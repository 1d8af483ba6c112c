from __future__ import annotations

import random

import ovirtsdk4
import pytest

from reconciler.engine.client import (EngineCallError, backoff_delays, is_transient,
                                      with_retries)
from reconciler.errors import EngineError


class Flaky:
    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_transient_classification():
    assert is_transient(ovirtsdk4.Error("boom", code=503))
    assert is_transient(ovirtsdk4.ConnectionError("refused"))
    assert is_transient(ovirtsdk4.TimeoutError("slow"))
    assert is_transient(ovirtsdk4.Error("Fault detail is \"[Host is busy]\"", code=409))
    assert is_transient(ovirtsdk4.Error("Error while sending HTTP request: (56, 'Recv failure')"))
    assert not is_transient(ovirtsdk4.Error("Cannot ... VM status illegal", code=409))
    assert not is_transient(ovirtsdk4.Error("bad", code=400))
    assert not is_transient(ovirtsdk4.AuthError("no"))
    assert not is_transient(ovirtsdk4.Error(
        "Error while sending HTTP request: (60, 'SSL certificate problem')"))


def test_retries_then_succeeds_with_growing_capped_delays():
    slept = []
    fn = Flaky([ovirtsdk4.Error("x", code=500), ovirtsdk4.Error("x", code=502)])
    assert with_retries(fn, attempts=3, base=1.0, cap=1.5, sleep=slept.append,
                        rng=random.Random(1)) == "ok"
    assert fn.calls == 3 and len(slept) == 2
    assert all(0 <= s <= 1.5 for s in slept)


def test_gives_up_after_attempts_with_engine_error():
    fn = Flaky([ovirtsdk4.Error("down", code=503)] * 5)
    with pytest.raises(EngineCallError) as err:
        with_retries(fn, attempts=3, base=0, cap=0, sleep=lambda s: None)
    assert fn.calls == 3 and err.value.status == 503
    assert isinstance(err.value, EngineError)


def test_permanent_error_is_not_retried():
    fn = Flaky([ovirtsdk4.Error("bad", code=400)])
    with pytest.raises(EngineCallError):
        with_retries(fn, attempts=5, base=0, cap=0, sleep=lambda s: None)
    assert fn.calls == 1


def test_backoff_is_capped_exponential():
    delays = backoff_delays(6, 0.5, 3.0, random.Random(0))
    assert len(delays) == 5
    bounds = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert all(0 <= d <= b for d, b in zip(delays, bounds))
