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
from pathlib import Path

from reconciler.plan.saved import save_plan
from reconciler.store import Store

from .conftest import api_mutations, REPO, embedded_spec, reconcile


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


def test_kill_at_random_points_then_rerun_converges(pristine_demo: Path, tmp_path: Path) -> None:
    import shutil
    state = tmp_path / "lab"
    shutil.copytree(pristine_demo, state, symlinks=True)
    spec = embedded_spec(tmp_path, state)
    store = tmp_path / "state.db"
    argv = [sys.executable, "-m", "reconciler", "--log-format", "json", "apply", "--yes",
            "--state", str(store), "--host-timeout", "60", str(spec)]
    rng = random.Random(int(os.environ.get("APPLY_KILL_SEED", "0")) or None)
    killed: list[str] = []
    for point in range(5):
        # Each run first starts the lab and observes (a few seconds), so kill inside its steps.
        delay = rng.uniform(3.0, 9.0)
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
        if proc.returncode == -signal.SIGKILL:
            killed.append(f"{delay:.1f}s")
        else:
            assert proc.returncode == 0, f"kill point {point}: {out}\n{err}"
    assert killed, "no run was killed"

    final = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, f"killed at {killed}\n{final.stdout}\n{final.stderr}"
    assert "The fleet now matches the spec" in final.stdout or "No changes" in final.stdout

    with Store(store) as db:
        runs = db.runs(limit=20)
        assert all(r.outcome is not None for r in runs), [(r.run_id, r.outcome) for r in runs]
        assert sum(1 for r in runs if r.outcome == "crashed") == len(killed)
        assert db.lock_info(f"lab:demo") is None
    plan = reconcile("--log-level", "warning", "plan", "--detailed-exitcode", str(spec))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    # every host is back up: no run's kill left one in maintenance
    engine = json.loads((state / "engine.json").read_text())
    assert {h["name"]: h["status"] for h in engine["hosts"]} == dict.fromkeys(
        ("m60-01", "m60-02", "t4-01", "amd-01"), "up")
