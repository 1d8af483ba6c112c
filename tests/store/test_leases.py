"""Leases (the controllers' leader election) on every backend: one holder at a time, renewal,
expiry, take-over with a growing term, release, and processes racing for one lease."""
from __future__ import annotations

import multiprocessing

import pytest

from reconciler.store import StateStore
from tests.store.backends import Backend, FakeClock, open_store


def test_first_taker_holds_and_others_are_refused(store: StateStore, clock: FakeClock) -> None:
    got = store.acquire_lease("engine:a", "ctl-1", ttl=10)
    assert got is not None and (got.holder, got.term, got.taken_over_from) == ("ctl-1", 1, None)
    assert got.expires_at.timestamp() == pytest.approx(clock.now + 10)
    assert store.acquire_lease("engine:a", "ctl-2", ttl=10) is None
    # Another name is another lease.
    assert store.acquire_lease("engine:b", "ctl-2", ttl=10) is not None


def test_renewal_moves_the_expiry_and_keeps_the_term(store: StateStore, clock: FakeClock) -> None:
    store.acquire_lease("engine:a", "ctl-1", ttl=10)
    clock.advance(8)
    renewed = store.acquire_lease("engine:a", "ctl-1", ttl=10)
    assert renewed is not None and renewed.term == 1
    assert renewed.expires_at.timestamp() == pytest.approx(clock.now + 10)
    clock.advance(8)            # 16 s after the first take: alive thanks to the renewal
    assert store.acquire_lease("engine:a", "ctl-2", ttl=10) is None


def test_an_expired_lease_is_taken_over_with_the_next_term(store: StateStore,
                                                           clock: FakeClock) -> None:
    store.acquire_lease("engine:a", "ctl-1", ttl=10)
    clock.advance(10.5)
    taken = store.acquire_lease("engine:a", "ctl-2", ttl=10)
    assert taken is not None
    assert (taken.holder, taken.term, taken.taken_over_from) == ("ctl-2", 2, "ctl-1")
    # The old holder learns it at its next renewal.
    assert store.acquire_lease("engine:a", "ctl-1", ttl=10) is None
    (lease,) = store.leases("engine:")
    assert lease.holder == "ctl-2"


def test_release_hands_over_at_once(store: StateStore) -> None:
    store.acquire_lease("engine:a", "ctl-1", ttl=10)
    assert store.release_lease("engine:a", "ctl-2") is False
    assert store.release_lease("engine:a", "ctl-1") is True
    assert store.acquire_lease("engine:a", "ctl-2", ttl=10) is not None


def test_leases_lists_by_prefix(store: StateStore) -> None:
    for name in ("engine:b", "engine:a", "other:x"):
        store.acquire_lease(name, "ctl-1", ttl=10)
    assert [lease.name for lease in store.leases("engine:")] == ["engine:a", "engine:b"]
    assert len(store.leases()) == 3


def test_a_ttl_must_be_positive(store: StateStore) -> None:
    with pytest.raises(ValueError):
        store.acquire_lease("engine:a", "ctl-1", ttl=0)


def _race(backend: str, location: str, holder: str, start: multiprocessing.synchronize.Event,
          out: multiprocessing.Queue) -> None:   # type: ignore[type-arg]
    store = open_store(backend, location)
    start.wait(10)
    try:
        out.put((holder, store.acquire_lease("engine:race", holder, ttl=30) is not None))
    finally:
        store.close()


def test_processes_racing_for_a_lease_exactly_one_wins(backend: Backend) -> None:
    backend.open().close()
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(backend.name, backend.location, f"ctl-{i}", start,
                                             out)) for i in range(6)]
    for p in procs:
        p.start()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    winners = [holder for holder, won in results if won]
    assert len(winners) == 1
    with backend.open() as s:
        (lease,) = s.leases("engine:race")
        assert lease.holder == winners[0]
