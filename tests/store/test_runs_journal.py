"""Runs and the step journal: history, before/after entries, what a crashed run leaves behind."""
from __future__ import annotations

import re
import threading

import pytest

from reconciler.store import ABANDONED, StateStore, StoreError
from tests.store.backends import Backend

RUN_ID = re.compile(r"^r-\d{8}-\d{6}-[0-9a-f]{4}$")


def test_run_ids_are_readable_and_unique(store: StateStore) -> None:
    ids = {store.start_run("plan", "lab:small", who="ci", host="h1") for _ in range(50)}
    assert len(ids) == 50
    assert all(RUN_ID.match(i) for i in ids)


def test_run_lifecycle_and_history(store: StateStore) -> None:
    first = store.start_run("apply", "lab:small", "rev-1", "digest-1", "alice", "h1")
    second = store.start_run("drift", "https://e/ovirt-engine/api", "rev-2", None, "bob", "h2")
    running = store.run(first)
    assert running is not None
    assert (running.kind, running.engine_key, running.spec_revision, running.plan_digest,
            running.who, running.host) == ("apply", "lab:small", "rev-1", "digest-1", "alice", "h1")
    assert running.outcome is None and running.finished_at is None

    store.finish_run(first, "ok", "3 steps applied")
    done = store.run(first)
    assert done is not None and done.outcome == "ok" and done.message == "3 steps applied"
    assert done.finished_at is not None and done.finished_at >= done.started_at

    assert [r.run_id for r in store.runs(10)] == [second, first]
    assert [r.run_id for r in store.runs(1)] == [second]
    assert [r.run_id for r in store.runs(10, engine_key="lab:small")] == [first]
    assert store.run("r-nope") is None


def test_finish_unknown_run_is_a_clear_error(store: StateStore) -> None:
    with pytest.raises(StoreError, match="no run 'r-missing'"):
        store.finish_run("r-missing", "ok")


def test_history_survives_reopening(backend: Backend) -> None:
    with backend.open() as s:
        run_id = s.start_run("apply", "lab:x")
        s.finish_run(run_id, "failed", "host gpu-02 did not come back")
    with backend.open() as s:
        record = s.run(run_id)
        assert record is not None and record.outcome == "failed"
        assert record.message == "host gpu-02 did not come back"


def test_journal_records_before_and_after(store: StateStore) -> None:
    run_id = store.start_run("apply", "lab:small")
    entry = store.journal_begin(run_id, "s1", "host:gpu-01", "set-kernel-cmdline", "host-reboot",
                                {"before": "quiet", "after": "quiet intel_iommu=on"})
    (begun,) = store.journal(run_id)
    assert begun.entry_id == entry and begun.outcome is None and begun.finished_at is None
    assert begun.detail == {"before": "quiet", "after": "quiet intel_iommu=on"}

    store.journal_end(entry, "ok", "verified", duration=1.5)
    (ended,) = store.journal(run_id)
    assert (ended.outcome, ended.message, ended.duration) == ("ok", "verified", 1.5)
    assert ended.finished_at is not None

    second = store.journal_begin(run_id, "s2", "vm:cad", "attach-host-device", "vm-restart")
    store.journal_end(second, "skipped", "VM is running")
    assert [(e.step_id, e.outcome) for e in store.journal(run_id)] == [("s1", "ok"),
                                                                      ("s2", "skipped")]
    assert store.journal(run_id)[1].duration is not None


def test_journal_rejects_bad_input(store: StateStore) -> None:
    run_id = store.start_run("apply", "lab:small")
    entry = store.journal_begin(run_id, "s1", "host:a", "x", "none")
    with pytest.raises(ValueError, match="step outcome"):
        store.journal_end(entry, "maybe")  # type: ignore[arg-type]
    store.journal_end(entry, "failed", "engine said 409")
    with pytest.raises(StoreError, match="already ended"):
        store.journal_end(entry, "ok")
    with pytest.raises(StoreError, match="no journal entry"):
        store.journal_end(99999, "ok")
    with pytest.raises(StoreError, match="no run 'r-ghost'"):
        store.journal_begin("r-ghost", "s1", "host:a", "x", "none")


def test_unfinished_steps_after_a_crash(backend: Backend) -> None:
    # The crashed run: begins two steps, ends one, then its process "dies" (store dropped).
    crashed = backend.open()
    dead_run = crashed.start_run("apply", "lab:small")
    ok = crashed.journal_begin(dead_run, "s1", "host:gpu-01", "write-modprobe", "host-reboot")
    crashed.journal_end(ok, "ok")
    crashed.journal_begin(dead_run, "s2", "host:gpu-01", "host-cycle", "host-reboot",
                          {"phase": "install"})
    other_engine = crashed.start_run("apply", "lab:other")
    crashed.journal_begin(other_engine, "s1", "host:x", "host-cycle", "host-reboot")
    crashed.close()

    with backend.open() as s:
        next_run = s.start_run("apply", "lab:small")
        mine = s.journal_begin(next_run, "s1", "host:gpu-01", "host-cycle", "host-reboot")
        left = s.unfinished_steps("lab:small", exclude_run=next_run)
        assert [(e.run_id, e.step_id, e.detail) for e in left] == [
            (dead_run, "s2", {"phase": "install"})]
        assert {e.step_id for e in s.unfinished_steps("lab:small")} == {"s2", "s1"}

        closed = s.abandon_unfinished("lab:small", by_run=next_run)
        assert [e.step_id for e in closed] == ["s2"]
        assert s.unfinished_steps("lab:small", exclude_run=next_run) == []
        assert s.journal(dead_run)[1].outcome == ABANDONED
        dead = s.run(dead_run)
        assert dead is not None and dead.outcome == "crashed" and next_run in (dead.message or "")
        # Our own open step and the other engine's are untouched.
        assert s.journal(next_run)[0].entry_id == mine and s.journal(next_run)[0].outcome is None
        assert len(s.unfinished_steps("lab:other")) == 1


def test_prune_keeps_the_newest_finished_runs_of_one_kind(store: StateStore) -> None:
    passes = [store.start_run("controller-pass", "lab:demo") for _ in range(5)]
    for run_id in passes[:4]:
        store.finish_run(run_id, "ok")
    apply_run = store.start_run("apply", "lab:demo")
    entry = store.journal_begin(apply_run, "1", "vm:a", "stop-vm", "vm-restart", {})
    store.journal_end(entry, "ok")
    store.finish_run(apply_run, "ok")
    other = store.start_run("controller-pass", "https://e/ovirt-engine/api")
    store.finish_run(other, "ok")

    assert store.prune_runs("lab:demo", "controller-pass", keep=2) == 2
    left = {r.run_id for r in store.runs(limit=100)}
    # The two newest finished passes, the unfinished one, the apply and the other engine's pass.
    assert left == {passes[2], passes[3], passes[4], apply_run, other}
    assert len(store.journal(apply_run)) == 1
    assert store.prune_runs("lab:demo", "controller-pass", keep=2) == 0
    with pytest.raises(ValueError):
        store.prune_runs("lab:demo", "controller-pass", keep=-1)


def test_one_store_object_serves_several_threads(store: StateStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                run_id = store.start_run("plan", f"lab:{n}")
                store.finish_run(run_id, "ok", str(i))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.runs(1000)) == 80
