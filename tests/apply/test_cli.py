"""`reconcile apply` as a process: saved plans (stale ones refused), the lock, confirmation, and
kill -9 at every journal boundary of an apply followed by a re-run that converges."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from reconciler.store import Store
from reconciler_lab.server import LabServer
from tests.support.secrets import write_secret

from .conftest import (REPO, TIME_SCALE, api_mutations, embedded_spec, reconcile, spec_body,
                       write_spec)

pytestmark = pytest.mark.lab


def _saved_plan(lab: Any, tmp_path: Path) -> Path:
    plan_file = tmp_path / "plan.json"
    proc = reconcile("plan", str(lab.spec), "--state", str(lab.store), "--out", str(plan_file))
    assert proc.returncode in (0, 2) and plan_file.exists(), proc.stdout + proc.stderr
    return plan_file


def test_stale_saved_plan_is_refused_naming_what_changed(served_lab, tmp_path: Path) -> None:
    lab = served_lab()
    plan_file = _saved_plan(lab, tmp_path)
    # out of band: someone removes vdi-01's vGPU after the plan was reviewed
    lab.server.engine.drift("vgpu-removed", vm="vdi-01")
    lab.server.clear_request_log()

    proc = reconcile("apply", "--state", str(lab.store), str(plan_file))

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "stale" in proc.stderr and "vm:vdi-01" in proc.stderr
    assert "mediated_devices" in proc.stderr
    assert not api_mutations(lab.server.request_log)
    assert "Traceback" not in proc.stderr


def test_fresh_saved_plan_is_applied_without_a_prompt(served_lab, tmp_path: Path) -> None:
    lab = served_lab(hostProfiles=[], vms=[{"name": "vdi-02", "restart": "allowed",
                                            "vgpu": {"type": "nvidia-231", "instances": 2}}])
    plan_file = _saved_plan(lab, tmp_path)

    proc = reconcile("apply", "--state", str(lab.store), str(plan_file),
                     stdin=subprocess.DEVNULL)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "The fleet now matches the spec" in proc.stdout
    vm = next(v for v in lab.server.engine.vms.values() if v.name == "vdi-02")
    assert sorted(p.get("mdevType") for p in vm.mdevs.values()) == ["nvidia-231", "nvidia-231"]


def test_second_apply_is_refused_naming_the_holder(served_lab) -> None:
    lab = served_lab()
    with Store(lab.store) as store:
        holder = store.start_run("apply", lab.server.url)
        with store.lock(lab.server.url, holder, pid=os.getpid()):
            proc = reconcile("apply", "--yes", "--state", str(lab.store), str(lab.spec))
    assert proc.returncode == 1
    assert holder in proc.stderr and "held by run" in proc.stderr
    assert not api_mutations(lab.server.request_log)


def test_without_a_terminal_yes_is_required(tmp_path: Path) -> None:
    spec = embedded_spec(tmp_path, tmp_path / "lab")
    proc = reconcile("apply", "--state", str(tmp_path / "s.db"), str(spec),
                     stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    assert "--yes" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "lab").exists()        # refused before the fleet was opened


# A small change that still crosses every kind of step recovery must handle: a running VM stopped
# so that its host can reboot, the host's kernel arguments, its cycle (deactivate, install,
# activate, verify) and the VM started again -- seven journaled steps, fourteen boundaries. No host
# access: what a kill leaves half done is on the engine, and host probes would cost each of the
# ~30 applies a second of emulated host commands.
KILL_SPEC = {
    "hostProfiles": [{"name": "m60", "selector": {"cluster": "gpu-intel", "names": ["m60-01"]},
                      "kernel": {"iommu": True, "blacklistNouveau": True,
                                 "extraArgs": ["pci=realloc"]},
                      "vgpu": {"placement": "consolidated"}}],
    "vms": [{"name": "vdi-01", "vgpu": {"type": "nvidia-18", "instances": 1,
                                        "secondaryDisplay": "vnc"},
             "restart": "allowed"}],
}
KILL_STEP_KINDS = {"stop-vm", "set-kernel-cmdline", "deactivate", "install", "activate",
                   "host-cycle", "start-vm"}


@contextmanager
def _fleet_copy(pristine: Path, where: Path) -> Iterator[tuple[LabServer, list[str], Path]]:
    """A fresh copy of the demo fleet served by a lab in this process (it outlives the applies
    we kill, as a real engine does), with the apply arguments for KILL_SPEC and its store."""
    state = where / "lab"
    shutil.copytree(pristine, state, symlinks=True)
    with LabServer("demo", state, time_scale=TIME_SCALE) as lab:
        password = where / "password"
        write_secret(password, lab.password + "\n")
        spec = write_spec(where / "spec.yaml", spec_body(
            engine={"url": lab.url, "username": lab.username,
                    "passwordFrom": {"file": str(password)}, "caFile": str(lab.ca_file)},
            **KILL_SPEC))
        store = where / "state.db"
        yield lab, ["--log-format", "json", "apply", "--yes", "--state", str(store),
                    "--host-timeout", "60", "--poll-interval", "0.02", str(spec)], store


def _apply(kill_at: int, args: list[str]) -> subprocess.CompletedProcess[str]:
    """`reconcile apply` as its own process, SIGKILLed at journal boundary `kill_at` (0: never)."""
    return subprocess.run([sys.executable, "-m", "tests.support.killpoint", str(kill_at), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def _boundaries(entries: list[Any]) -> int:
    """Committed journal writes: every step begun, and every step ended."""
    return len(entries) + sum(1 for e in entries if e.finished_at is not None)


def _fleet_state(lab: LabServer) -> dict[str, Any]:
    """What the apply is about, as the engine holds it (ids and placement left out)."""
    engine = lab.engine
    assert engine is not None
    with engine.lock:
        return {
            "hosts": {h.name: (h.status, h.custom_kernel_cmdline, h.booted_args,
                               h.reinstallation_required) for h in engine.hosts.values()},
            "vms": {v.name: (v.status, sorted(tuple(sorted(m.items())) for m in v.mdevs.values()),
                             sorted(v.consoles), sorted(v.host_devices))
                    for v in engine.vms.values()}}


def test_kill_at_every_journal_boundary_then_rerun_converges(pristine_demo: Path,
                                                            tmp_path: Path) -> None:
    """kill -9 the apply right after each of its journal writes in turn; the next apply must
    bring back what the dead one took down and end where an uninterrupted apply ends.

    Replay one kill point with APPLY_KILL_POINTS=N (or N,M,...)."""
    with _fleet_copy(pristine_demo, tmp_path / "learn") as (lab, args, store):
        before = _fleet_state(lab)
        whole = _apply(0, args)
        assert whole.returncode == 0, whole.stdout + whole.stderr
        converged = _fleet_state(lab)
        with Store(store) as db:
            (run,) = db.runs()
            entries = db.journal(run.run_id)
    assert converged != before
    assert {e.action for e in entries} >= KILL_STEP_KINDS, [e.action for e in entries]
    total = _boundaries(entries)
    chosen = os.environ.get("APPLY_KILL_POINTS")
    points = [int(n) for n in chosen.split(",")] if chosen else range(1, total + 1)

    for point in points:
        at = f"kill point {point} of {total} (replay: APPLY_KILL_POINTS={point})"
        with _fleet_copy(pristine_demo, tmp_path / f"point{point}") as (lab, args, store):
            killed = _apply(point, args)
            assert killed.returncode == -signal.SIGKILL, (
                f"{at}: exit {killed.returncode}, not killed\n{killed.stderr[-2000:]}")
            with Store(store) as db:
                (dead,) = db.runs()
                assert _boundaries(db.journal(dead.run_id)) == point, at

            again = _apply(0, args)
            assert again.returncode == 0, f"{at}\n{again.stdout}\n{again.stderr[-3000:]}"
            assert ("The fleet now matches the spec" in again.stdout
                    or "No changes" in again.stdout), f"{at}\n{again.stdout}"
            # Nothing left down, nothing half done: the fleet as the uninterrupted apply left it.
            assert _fleet_state(lab) == converged, at
            with Store(store) as db:
                runs = db.runs(limit=10)
                assert len(runs) == 2 and all(r.outcome is not None for r in runs), (at, runs)
                assert db.run(dead.run_id).outcome == "crashed", at   # the killed run, reported
                assert db.lock_info(lab.url) is None, at
                assert all(e.outcome is not None for r in runs for e in db.journal(r.run_id)), at


def _stale(store_path: Path, engine_key: str, age: float) -> None:
    """Age the lock's heartbeat as a holder that stopped beating `age` seconds ago would."""
    import sqlite3
    with sqlite3.connect(store_path) as db:
        db.execute("UPDATE locks SET heartbeat_at = ? WHERE engine_key = ?",
                   (time.time() - age, engine_key))
    db.close()


def test_force_unlock_takes_over_a_dead_holder_only(served_lab) -> None:
    lab = served_lab()
    key = lab.server.url
    with Store(lab.store) as store:
        dead = store.start_run("apply", key, who="ops", host="build-07")
        # A holder on another host whose heartbeat stopped long ago: it cannot be proved gone
        # from here, so it needs --force-unlock with its run id.
        store.acquire_lock(key, dead, who="ops", host="build-07", pid=4242)
    _stale(lab.store, key, 3600)
    base = ("apply", "--yes", "--state", str(lab.store), "--max-disruption", "none")

    refused = reconcile(*base, str(lab.spec))
    assert refused.returncode == 1
    assert f"--force-unlock {dead}" in refused.stderr, refused.stderr
    wrong = reconcile(*base, "--force-unlock", "r-20260101-000000-0000", str(lab.spec))
    assert wrong.returncode == 1 and "does not match the holder" in wrong.stderr
    assert not api_mutations(lab.server.request_log)

    taken = reconcile(*base, "--force-unlock", dead, str(lab.spec))
    assert taken.returncode == 0, taken.stdout + taken.stderr
    assert f"took over the apply lock from run {dead} (--force-unlock)" in taken.stdout
    with Store(lab.store) as store:
        assert store.lock_info(key) is None                     # released at the end
        assert store.run(dead).outcome == "crashed"             # the dead run is closed
        runs = [r for r in store.runs(engine_key=key) if r.kind == "apply" and r.run_id != dead]
        assert [r.outcome for r in runs].count("ok") == 1

    # A live holder (this test's own process, beating) is never taken, even when named.
    with Store(lab.store) as store:
        live = store.start_run("apply", key)
        with store.lock(key, live, pid=os.getpid()):
            lab.server.clear_request_log()
            proc = reconcile(*base, "--force-unlock", live, str(lab.spec))
            assert store.lock_info(key).run_id == live
    assert proc.returncode == 1
    assert "which is alive" in proc.stderr and live in proc.stderr, proc.stderr
    assert not api_mutations(lab.server.request_log)
