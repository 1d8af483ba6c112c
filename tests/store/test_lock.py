"""The apply lock: one holder per engine across processes, dead holders detected, take-over rules."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.errors import LockedError
from reconciler.store import Store, process_gone

REPO = Path(__file__).resolve().parents[2]
ENGINE = "lab:small"


def _race(path: str, run_id: str, start: "multiprocessing.synchronize.Barrier",
          results: "multiprocessing.Queue[tuple[str, str]]",
          done: "multiprocessing.synchronize.Event") -> None:
    store = Store(path)
    start.wait()
    try:
        store.acquire_lock(ENGINE, run_id, who=run_id)
        results.put((run_id, "won"))
    except LockedError as exc:
        results.put((run_id, f"lost: {exc}"))
    # Stay alive so the winner is a live holder while the others try.
    done.wait(30)


def test_processes_racing_for_the_lock_exactly_one_wins(db_path: Path) -> None:
    Store(db_path).close()  # create the schema first, as any real first run would
    ctx = multiprocessing.get_context("fork")
    contenders = 4
    start = ctx.Barrier(contenders)
    done = ctx.Event()
    results: multiprocessing.Queue[tuple[str, str]] = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(db_path), f"r-race-{i}", start, results, done))
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
    with Store(db_path) as s:
        held = s.lock_info(ENGINE)
        assert held is not None and held.run_id == winners[0]


HOLDER = """
import sys, time
from reconciler.store import Store
s = Store(sys.argv[1])
run = s.start_run("apply", "lab:small", who="ops")
s.acquire_lock("lab:small", run, who="ops")
s.journal_begin(run, "s1", "host:gpu-01", "host-cycle", "host-reboot")
print(run, flush=True)
time.sleep(60)
"""


def _start_holder(db_path: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db_path)], stdout=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id.startswith("r-"), run_id
    return proc, run_id


def test_live_holder_in_another_process_blocks_with_a_useful_message(db_path: Path) -> None:
    proc, holder = _start_holder(db_path)
    try:
        with Store(db_path) as s:
            with pytest.raises(LockedError) as err:
                s.acquire_lock(ENGINE, "r-me", who="bob")
            message = str(err.value)
            for part in (holder, "by ops", f"pid {proc.pid}", s.hostname, "since", "alive"):
                assert part in message
            assert "reconcile status" not in message      # no such command to point at
            # Forcing does not steal from a live holder either.
            with pytest.raises(LockedError, match="alive"):
                s.acquire_lock(ENGINE, "r-me", force_unlock=holder)
    finally:
        proc.kill()
        proc.wait()


def test_holder_killed_with_sigkill_is_dead_and_taken_over(db_path: Path) -> None:
    proc, holder = _start_holder(db_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Store(db_path) as s:
        held = s.lock_info(ENGINE)
        assert held is not None and held.run_id == holder
        assert s.lock_is_dead(held)
        run_id = s.start_run("apply", ENGINE)
        info = s.acquire_lock(ENGINE, run_id)
        assert info.taken_over_from == holder and info.pid == os.getpid()
        assert [e.run_id for e in s.unfinished_steps(ENGINE, exclude_run=run_id)] == [holder]


def test_killed_but_unreaped_holder_counts_as_gone(db_path: Path) -> None:
    proc, holder = _start_holder(db_path)
    os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not process_gone(proc.pid, None) and time.monotonic() < deadline:
        time.sleep(0.01)  # a zombie until we reap it
    try:
        with Store(db_path) as s:
            assert s.acquire_lock(ENGINE, "r-next").taken_over_from == holder
    finally:
        proc.wait()


def test_stale_holder_elsewhere_needs_the_matching_force_unlock(db_path: Path) -> None:
    with Store(db_path, lock_ttl=0.05) as s:
        s.acquire_lock(ENGINE, "r-far", who="carol", host="other-host", pid=4242)
        with pytest.raises(LockedError, match="alive"):
            s.acquire_lock(ENGINE, "r-me")   # heartbeat still fresh
        time.sleep(0.1)
        with pytest.raises(LockedError, match="--force-unlock r-far"):
            s.acquire_lock(ENGINE, "r-me")
        with pytest.raises(LockedError, match="does not match"):
            s.acquire_lock(ENGINE, "r-me", force_unlock="r-wrong")
        info = s.acquire_lock(ENGINE, "r-me", force_unlock="r-far")
        assert info.run_id == "r-me" and info.taken_over_from == "r-far"
        # The old holder notices at its next heartbeat.
        with pytest.raises(LockedError, match="now held by run r-me"):
            s.heartbeat(ENGINE, "r-far")


def test_heartbeat_keeps_a_holder_alive(db_path: Path) -> None:
    with Store(db_path, lock_ttl=0.2) as s:
        s.acquire_lock(ENGINE, "r-far", host="other-host", pid=4242)
        for _ in range(4):
            time.sleep(0.08)
            s.heartbeat(ENGINE, "r-far")
        with pytest.raises(LockedError, match="alive"):
            s.acquire_lock(ENGINE, "r-me")


def test_release_and_context_manager(store: Store) -> None:
    with store.lock(ENGINE, "r-one", heartbeat_every=0.01) as info:
        assert info.run_id == "r-one"
        first_beat = info.heartbeat_at
        time.sleep(0.05)
        held = store.lock_info(ENGINE)
        assert held is not None and held.heartbeat_at > first_beat
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


def test_lock_released_when_the_block_raises(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with store.lock(ENGINE, "r-one"):
            raise RuntimeError("step failed")
    assert store.lock_info(ENGINE) is None


def test_process_gone_is_conservative() -> None:
    assert not process_gone(os.getpid(), None)
    assert not process_gone(1, None)          # exists (maybe not ours): alive
    assert not process_gone(0, None)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_gone(proc.pid, None)


def test_a_reused_pid_is_recognised_by_its_start_time() -> None:
    from reconciler.store.liveness import process_start
    mine = process_start(os.getpid())
    assert mine is not None
    assert not process_gone(os.getpid(), mine)
    assert process_gone(os.getpid(), mine + 1)


def test_the_heartbeat_thread_does_not_leak_connections(store: Store) -> None:
    store.start_run("plan", ENGINE)        # this thread's connection
    for i in range(5):
        with store.lock(ENGINE, f"r-{i}", heartbeat_every=0.005):
            time.sleep(0.02)
    assert store._db.open_connections == 1
