"""`reconcile apply` as a process: saved plans (stale ones refused), the lock, confirmation, and
kill -9 at random points followed by a re-run that converges."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from reconciler.plan.saved import save_plan
from reconciler.store import Store

from .conftest import REPO, api_mutations, embedded_spec, reconcile, spec_body, write_spec


def test_stale_saved_plan_is_refused_naming_what_changed(served_lab, tmp_path: Path) -> None:
    lab = served_lab()
    plan_file = tmp_path / "plan.json"
    save_plan(lab.plan(), plan_file)
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
    plan_file = tmp_path / "plan.json"
    save_plan(lab.plan(), plan_file)

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


def _run_until_killed(argv: list[str], steps: int, extra: float) -> tuple[bool, str]:
    """Start an apply and SIGKILL it `extra` seconds after its `steps`-th finished step."""
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    seen = 0
    tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        tail = (tail + [line])[-5:]
        if '"apply.step"' in line:
            seen += 1
            if seen >= steps:
                time.sleep(extra)
                proc.send_signal(signal.SIGKILL)
                break
    proc.stderr.close()
    proc.wait(timeout=60)
    if proc.returncode != -signal.SIGKILL:
        return False, f"exit {proc.returncode} after step {seen}: {''.join(tail)}"
    return True, f"after step {seen} + {extra:.2f}s"


@contextmanager
def _served(state: Path) -> Iterator[dict[str, str]]:
    """`reconcile lab serve` on `state` as its own process: the engine outlives the applies we
    kill, as a real engine does (an embedded lab would die with them)."""
    proc = subprocess.Popen([sys.executable, "-m", "reconciler", "lab", "serve", "--fleet",
                             "demo", "--state", str(state), "--time-scale", "0.01"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGTERM)         # saves its state on the way out
        proc.wait(timeout=30)


def test_kill_at_random_points_then_rerun_converges(pristine_demo: Path, tmp_path: Path) -> None:
    import shutil
    rng = random.Random(int(os.environ.get("APPLY_KILL_SEED", "0")) or None)
    for point in range(5):
        where = tmp_path / f"point{point}"
        state = where / "lab"
        shutil.copytree(pristine_demo, state, symlinks=True)
        store = where / "state.db"
        with _served(state) as lab:
            spec = write_spec(where / "spec.yaml", spec_body(
                engine={"url": lab["url"], "username": lab["username"],
                        "passwordFrom": {"file": lab["password_file"]},
                        "caFile": lab["ca_file"]},
                hostAccess={"localRoots": str(state / "hosts")}))
            argv = [sys.executable, "-m", "reconciler", "--log-format", "json", "apply",
                    "--yes", "--state", str(store), "--host-timeout", "60",
                    "--poll-interval", "0.02", str(spec)]
            # The demo plan runs ~30 journaled steps; kill somewhere in them, often mid-step.
            killed, at = _run_until_killed(argv, rng.randint(1, 20), rng.uniform(0.0, 0.4))
            assert killed, f"kill point {point} ({at}): the run ended before the kill"

            again = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
            assert again.returncode == 0, f"killed {at}\n{again.stdout}\n{again.stderr}"
            assert ("The fleet now matches the spec" in again.stdout
                    or "No changes" in again.stdout), again.stdout
            if point == 4:
                plan = reconcile("--log-level", "warning", "plan", "--detailed-exitcode",
                                 str(spec))
                assert plan.returncode == 0, plan.stdout + plan.stderr
            with Store(store) as db:
                runs = db.runs(limit=10)
                assert len(runs) == 2 and all(r.outcome is not None for r in runs), (at, runs)
                assert runs[-1].outcome == "crashed"          # the killed run, reported once
                assert db.lock_info(lab["url"]) is None
                assert all(e.outcome is not None for r in runs for e in db.journal(r.run_id))
        # no kill left a host out of up or a VM stopped that should run
        engine = json.loads((state / "engine.json").read_text())
        assert {h["name"]: h["status"] for h in engine["hosts"]} == dict.fromkeys(
            ("m60-01", "m60-02", "t4-01", "amd-01"), "up"), at
        assert {v["name"]: v["status"] for v in engine["vms"]
                if v["name"] in ("vdi-01", "vdi-03", "web-01")} == dict.fromkeys(
            ("vdi-01", "vdi-03", "web-01"), "up"), at


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
