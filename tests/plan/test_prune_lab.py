"""`prune` end to end: plan and apply against the embedded lab engine (demo fleet), then observe.

In the demo fleet no spec names vdi-01 (running, one nvidia-18 vGPU) or ml-01 (down, the H100
attached), so they are unmanaged."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.lab

SPEC = """\
apiVersion: gpu-reconciler/v1
engine:
  lab: {fleet: demo, state: ./state}
vms:
  - name: vdi-02
    vgpu: {type: nvidia-18}
"""
PRUNE = "prune: {unmanagedVgpus: true, unmanagedHostDevices: true, vms: [vdi-01, ml-*]}\n"


def _child_pythonpath() -> str:
    """This checkout for the child (not whichever one the venv installed), after what the run
    put first (the mark guard's watcher)."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), root) if p)


def reconcile(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "--log-level", "warning", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1",
                               "PYTHONPATH": _child_pythonpath()})


def _plan(cwd: Path) -> dict[str, Any]:
    proc = reconcile(cwd, "plan", "spec", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _vms(cwd: Path) -> dict[str, dict[str, Any]]:
    proc = reconcile(cwd, "observe", "spec", "-o", "json", "--no-probe")
    assert proc.returncode == 0, proc.stderr
    return {v["name"]: v for v in json.loads(proc.stdout)["vms"]}


def test_prune_plans_applies_and_converges_without_stopping_vms(tmp_path: Path) -> None:
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "fleet.yaml").write_text(SPEC)
    before = _vms(tmp_path)
    assert before["vdi-01"]["status"] == "up" and before["vdi-01"]["mediated_devices"]
    assert before["ml-01"]["status"] == "down" and before["ml-01"]["host_devices"]

    off = _plan(tmp_path)
    assert not [a for a in off["actions"] if a["reason"] == "prune"]
    assert {"vm:vdi-01", "vm:ml-01"} <= {d["key"] for d in off["drift"]
                                         if d["status"] == "unmanaged"}

    (tmp_path / "spec" / "prune.yaml").write_text("apiVersion: gpu-reconciler/v1\n" + PRUNE)
    on = _plan(tmp_path)
    pruned = [(a["kind"], a["target"]) for a in on["actions"] if a["reason"] == "prune"]
    assert pruned == [("detach-host-device", "vm:ml-01"), ("remove-mediated-device", "vm:vdi-01")]
    assert not [a for a in on["actions"] if a["kind"] in ("stop-vm", "start-vm")]
    assert on["summary"]["unmanaged"] == len([d for d in on["drift"]
                                              if d["status"] == "unmanaged"])
    assert not [d for d in on["drift"] if d["status"] == "unmanaged"
                and d["key"] in ("vm:vdi-01", "vm:ml-01")]

    applied = reconcile(tmp_path, "apply", "-y", "--state", "state.db", "spec")
    assert applied.returncode == 0, applied.stdout + applied.stderr

    after = _vms(tmp_path)
    assert after["vdi-01"]["status"] == "up"          # still running: removal waits for a start
    assert after["vdi-01"]["mediated_devices"] == []
    assert [d for d in after["ml-01"]["host_devices"] if not d.get("placeholder")] == []
    again = _plan(tmp_path)
    assert again["actions"] == []
    assert not [d for d in again["drift"] if d["key"] in ("vm:vdi-01", "vm:ml-01")]
