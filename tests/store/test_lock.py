"""The apply lock: one holder per engine across processes, dead holders detected, take-over rules."""
from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.errors import LockedError
from reconciler.store import DEFAULT_LOCK_TTL, StateStore, process_gone
from tests.store.backends import Backend, FakeClock, open_store

REPO = Path(__file__).resolve().parents[2]
ENGINE = "lab:small"


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait for something another thread or process does; the limit only stops a hung test."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def _race(backend: str, location: str, run_id: str,
          start: "multiprocessing.synchronize.Barrier",
          results: "multiprocessing.Queue[tuple[str, str]]",
          done: "multiprocessing.synchronize.Event") -> None:
    store = open_store(backend, location)
    start.wait()
    try:
        store.acquire_lock(ENGINE, run_id, who=run_id)
        results.put((run_id, "won"))
    except LockedError as exc:
        results.put((run_id, f"lost: {exc}"))
    # Stay alive so the winner is a live holder while the others try.
    done.wait(30)


def test_processes_racing_for_the_lock_exactly_one_wins(backend: Backend) -> None:
    backend.open().close()  # create the schema first, as any real first run would
    ctx = multiprocessing.get_context("fork")
    contenders = 4
    start = ctx.Barrier(contenders)
    done = ctx.Event()
    results: multiprocessing.Queue[tuple[str, str]] = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(backend.name, backend.location, f"r-race-{i}",
                                             start, results, done))
             for i in range(contenders)]
    for p in procs:
        p.start()
    try:
        outcomes = dict(results.get(timeout=30) for _ in procs)
    finally:
        done.set()
        for p in procs:
            p.join(30)
    winners = [run for run, result in outcomes.items() if result == "won"]
    assert len(winners) == 1, outcomes
    for run, result in outcomes.items():
        if run != winners[0]:
            assert winners[0] in result and "alive" in result
    with backend.open() as s:
        held = s.lock_info(ENGINE)
        assert held is not None and held.run_id == winners[0]


HOLDER = """
import sys, time
from tests.store.backends import open_store
s = open_store(sys.argv[1], sys.argv[2])
run = s.start_run("apply", "lab:small", who="ops")
s.acquire_lock("lab:small", run, who="ops")
s.journal_begin(run, "s1", "host:gpu-01", "host-cycle", "host-reboot")
print(run, flush=True)
time.sleep(60)
"""


def _start_holder(backend: Backend) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, backend.name, backend.location],
                            stdout=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id.startswith("r-"), run_id
    return proc, run_id


def test_live_holder_in_another_process_blocks_with_a_useful_message(backend: Backend) -> None:
    proc, holder = _start_holder(backend)
    try:
        with backend.open() as s:
            with pytest.raises(LockedError) as err:
                s.acquire_lock(ENGINE, "r-me", who="bob")
            message = str(err.value)
            for part in (holder, "by ops", f"pid {proc.pid}", socket.gethostname(), "since",
                         "alive"):
                assert part in message
            assert "reconcile status" not in message      # no such command to point at
            # Forcing does not steal from a live holder either.
            with pytest.raises(LockedError, match="alive"):
                s.acquire_lock(ENGINE, "r-me", force_unlock=holder)
    finally:
        proc.kill()
        proc.wait()


def test_holder_killed_with_sigkill_is_dead_and_taken_over(backend: Backend) -> None:
    proc, holder = _start_holder(backend)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with backend.open() as s:
        held = s.lock_info(ENGINE)
        assert held is not None and held.run_id == holder
        assert s.lock_is_dead(held)
        run_id = s.start_run("apply", ENGINE)
        info = s.acquire_lock(ENGINE, run_id)
        assert info.taken_over_from == holder and info.pid == os.getpid()
        assert [e.run_id for e in s.unfinished_steps(ENGINE, exclude_run=run_id)] == [holder]


def test_killed_but_unreaped_holder_counts_as_gone(backend: Backend) -> None:
    proc, holder = _start_holder(backend)
    os.kill(proc.pid, signal.SIGKILL)
    try:
        _wait_until(lambda: process_gone(proc.pid, None), "the killed holder to be a zombie")
        with backend.open() as s:
            assert s.acquire_lock(ENGINE, "r-next").taken_over_from == holder
    finally:
        proc.wait()


def test_stale_holder_elsewhere_needs_the_matching_force_unlock(store: StateStore,
                                                               clock: FakeClock) -> None:
    held = store.acquire_lock(ENGINE, "r-far", who="carol", host="other-host", pid=4242)
    with pytest.raises(LockedError, match="alive"):
        store.acquire_lock(ENGINE, "r-me")   # heartbeat still fresh
    assert not store.lock_is_dead(held)
    clock.advance(DEFAULT_LOCK_TTL + 1)
    assert store.lock_is_dead(held)
    with pytest.raises(LockedError, match="--force-unlock r-far"):
        store.acquire_lock(ENGINE, "r-me")
    with pytest.raises(LockedError, match="does not match"):
        store.acquire_lock(ENGINE, "r-me", force_unlock="r-wrong")
    info = store.acquire_lock(ENGINE, "r-me", force_unlock="r-far")
    assert info.run_id == "r-me" and info.taken_over_from == "r-far"
    # The old holder notices at its next heartbeat.
    with pytest.raises(LockedError, match="now held by run r-me"):
        store.heartbeat(ENGINE, "r-far")


def test_heartbeat_keeps_a_holder_alive(store: StateStore, clock: FakeClock) -> None:
    store.acquire_lock(ENGINE, "r-far", host="other-host", pid=4242)
    for _ in range(4):                      # 3.2 TTLs in all, never one without a heartbeat
        clock.advance(DEFAULT_LOCK_TTL * 0.8)
        store.heartbeat(ENGINE, "r-far")
    with pytest.raises(LockedError, match="alive"):
        store.acquire_lock(ENGINE, "r-me")


def test_lock_ttl_sets_when_a_silent_holder_looks_dead(backend: Backend,
                                                      clock: FakeClock) -> None:
    with backend.open(lock_ttl=60, clock=clock) as s:
        s.acquire_lock(ENGINE, "r-far", host="other-host", pid=4242)
        clock.advance(59)
        with pytest.raises(LockedError, match="alive"):
            s.acquire_lock(ENGINE, "r-me")
        clock.advance(2)
        with pytest.raises(LockedError, match="older than 60s"):
            s.acquire_lock(ENGINE, "r-me")


def test_release_and_context_manager(store: StateStore, clock: FakeClock) -> None:
    with store.lock(ENGINE, "r-one", heartbeat_every=0.01) as info:
        assert info.run_id == "r-one"
        clock.advance(60)

        def beaten() -> bool:
            held = store.lock_info(ENGINE)
            return held is not None and held.heartbeat_at > info.heartbeat_at
        _wait_until(beaten, "the heartbeat thread to refresh the lock")
        # Same run again is re-entrant; the holder is unchanged.
        assert store.acquire_lock(ENGINE, "r-one").acquired_at == info.acquired_at
    assert store.lock_info(ENGINE) is None
    assert store.release_lock(ENGINE, "r-one") is False
    store.acquire_lock(ENGINE, "r-two")
    assert store.release_lock(ENGINE, "r-one") is False   # not the holder: nothing changes
    assert store.lock_info(ENGINE) is not None
    assert store.release_lock(ENGINE, "r-two") is True
    # Locks are per engine.
    store.acquire_lock("lab:a", "r-a")
    store.acquire_lock("lab:b", "r-b")


def test_lock_released_when_the_block_raises(store: StateStore) -> None:
    with pytest.raises(RuntimeError):
        with store.lock(ENGINE, "r-one"):
            raise RuntimeError("step failed")
    assert store.lock_info(ENGINE) is None
