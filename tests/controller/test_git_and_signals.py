"""A git ref as the spec source, and SIGTERM in the middle of an apply."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from reconciler_lab.server import LabServer
from reconciler.store import Store

from .conftest import IN_SYNC, T4_NEEDS_A_CYCLE, sdk_connection, spec_text, wait_for, write_spec


def _git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com")
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.mark.lab
def test_git_ref_moves_are_picked_up(lab: LabServer, tmp_path: Path,
                                     start_controller: Any) -> None:
    bare = tmp_path / "fleet.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(bare)],
                   check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(work)], check=True,
                   capture_output=True)
    _git(work, "checkout", "--quiet", "-b", "main")
    (work / "fleet").mkdir()
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (work / "fleet" / "spec.yaml").write_text(spec_text(lab, secrets))
    _git(work, "add", "fleet/spec.yaml")
    _git(work, "commit", "--quiet", "-m", "in sync")
    _git(work, "push", "--quiet", "origin", "main")
    first = _git(work, "rev-parse", "HEAD")

    ctl = start_controller("fleet", "--git", f"file://{bare}", "--ref", "main", "--poll", "0.3s",
                           "--state", str(tmp_path / "state" / "state.db"), "--resync", "10m")
    status = ctl.wait_ready()
    assert status["revision"] == first
    assert status["drift"]["count"] == 0

    wanted = dict(IN_SYNC, vms=[dict(IN_SYNC["vms"][0],
                                     vgpu={"type": "nvidia-18", "instances": 2,
                                           "secondaryDisplay": "vnc"})])
    (work / "fleet" / "spec.yaml").write_text(spec_text(lab, secrets, wanted))
    _git(work, "commit", "--quiet", "-am", "two vGPUs for vdi-01")
    _git(work, "push", "--quiet", "origin", "main")
    second = _git(work, "rev-parse", "HEAD")

    status = wait_for("the new revision", lambda: (s := ctl.status())["revision"] == second
                      and s["last_pass"]["trigger"] and "git" in s["last_pass"]["trigger"]
                      and s)
    assert "vm:vdi-01" in {i["key"] for i in status["drift"]["items"]}
    # The private clone lives next to the state database, checked out at that revision.
    clones = list((tmp_path / "state" / "git").iterdir())
    assert len(clones) == 1
    assert _git(clones[0], "rev-parse", "HEAD") == second
    assert ctl.terminate() == 0


def test_bad_git_ref_is_refused_at_start(tmp_path: Path) -> None:
    from .conftest import run_cli
    done = run_cli("controller", "fleet", "--git", "file:///nowhere", "--ref=--upload-pack=x",
                   "--state", str(tmp_path / "s.db"), cwd=tmp_path)
    assert done.returncode == 1
    assert "not a valid branch, tag or ref name" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.lab
def test_sigterm_during_apply_exits_cleanly_and_restart_converges(
        slow_lab: LabServer, tmp_path: Path, start_controller: Any) -> None:
    lab = slow_lab
    specs = write_spec(lab, tmp_path / "specs", T4_NEEDS_A_CYCLE).parent
    args = (str(specs), "--state", str(tmp_path / "state.db"), "--mode", "apply",
            "--max-disruption", "host-reboot", "--resync", "10m", "--events-interval", "0.2s")
    ctl = start_controller(*args)
    wait_for("the apply to start", lambda: ctl.status()["apply"], every=0.05)
    assert ctl.terminate(timeout=120) == 0
    logs = ctl.logs()
    assert "Traceback" not in logs
    assert '"controller.stopped"' in logs

    with Store(tmp_path / "state.db") as store:
        applies = [r for r in store.runs() if r.kind == "apply"]
        # The run was closed: stopped at a safe point, or done if the cycle was its last unit.
        assert len(applies) == 1 and applies[0].outcome in ("stopped", "ok"), applies
        assert store.lock_info(lab.url) is None                        # and the lock released
        journal = store.journal(applies[0].run_id)
    # The host was never left half-way: a cycle that started was finished.
    started = {e.action for e in journal}
    if "deactivate" in started:
        assert "activate" in started and all(e.outcome is not None for e in journal)

    conn = sdk_connection(lab)
    try:
        # No host is left out of service by the stopped apply.
        statuses = {h.name: h.status.value for h in conn.system_service().hosts_service().list()}
    finally:
        conn.close()
    assert set(statuses.values()) == {"up"}, statuses

    again = start_controller(*args, name="restarted")
    status = wait_for("convergence after the restart",
                      lambda: (s := again.status())["last_pass"] and not s["apply"]
                      and s["last_pass"]["result"] == "ok" and s, timeout=90)
    # Only VMs no spec mentions are left to report.
    assert {i["class"] for i in status["drift"]["items"]} <= {"unmanaged"}
    conn = sdk_connection(lab)
    try:
        hosts = conn.system_service().hosts_service()
        host = hosts.list(search="name=t4-01")[0]
        assert host.status.value == "up"
        assert "intel_iommu=on" in (host.os.reported_kernel_cmdline or "")
    finally:
        conn.close()
    assert again.terminate() == 0
