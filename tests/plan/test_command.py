"""`reconcile plan` end to end against the embedded lab engine (started by the command itself)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from reconciler.plan.planfile import load_plan

pytestmark = pytest.mark.lab

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "plan.schema.json").read_text())

SPEC = """\
apiVersion: gpu-reconciler/v1
engine:
  lab: {fleet: demo, state: ./state}
hostProfiles:
  - name: vgpu-m60
    selector: {cluster: gpu-intel, names: ["m60-*"]}
    kernel: {iommu: true, blacklistNouveau: true}
    vgpu: {placement: consolidated}
    rollout: {maxUnavailable: 1}
vms:
  - name: vdi-02
    vgpu: {type: nvidia-18, instances: 2}
"""


def _child_pythonpath() -> str:
    """This checkout for the child (not whichever one the venv installed), after what the run
    put first (the mark guard's watcher)."""
    root = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), root) if p)


def reconcile(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "--log-level", "warning", "plan",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1",
                               "PYTHONPATH": _child_pythonpath()})


def test_plan_json_saved_and_detailed_exitcode(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(SPEC)
    proc = reconcile(tmp_path, "lab.yaml", "-o", "json", "--out", "plan.json",
                     "--detailed-exitcode")
    assert proc.returncode == 2, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    kinds = [(a["kind"], a["target"]) for a in data["actions"]]
    assert ("set-kernel-cmdline", "host:m60-02") in kinds
    assert ("host-cycle", "host:m60-02") in kinds
    assert kinds.count(("add-mediated-device", "vm:vdi-02")) == 2
    saved = load_plan(tmp_path / "plan.json")
    assert [a.to_dict() for a in saved.actions] == data["actions"]
    assert "host:m60-02" in saved.fingerprints and "vm:vdi-02" in saved.fingerprints
    assert saved.snapshots["host:m60-02"]        # probes of lab hosts are part of the snapshot
    assert '"probe":{' in saved.snapshots["host:m60-02"]


def test_plan_text_markdown_and_blockers(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(SPEC + "  - name: vdi-2\n    vgpu: {type: nvidia-18}\n")
    proc = reconcile(tmp_path, "lab.yaml", "-o", "markdown")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.startswith("### ⛔ gpu-reconciler plan")
    assert "VM vdi-2 does not exist in the engine (did you mean 'vdi-02'" in proc.stdout
    assert "lab.yaml:13:5" in proc.stdout


def test_plan_bad_spec_lists_locations(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(SPEC.replace("maxUnavailable: 1", "maxUnavailable: -3"))
    proc = reconcile(tmp_path, "lab.yaml")
    assert proc.returncode == 1
    assert "lab.yaml:9:" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_plan_reads_applied_records_from_the_state_store(tmp_path: Path) -> None:
    from reconciler.store import Store

    (tmp_path / "lab.yaml").write_text(SPEC)
    first = reconcile(tmp_path, "lab.yaml", "-o", "json")
    assert first.returncode == 0, first.stderr
    # Planning only reads the store: a missing one is not created.
    assert not (tmp_path / ".reconciler").exists()
    data = json.loads(first.stdout)
    statuses = {d["key"]: d["status"] for d in data["drift"]}
    assert statuses["host:m60-02"] == "pending" and statuses["vm:vdi-02"] == "pending"
    # As if an apply had converged these objects and the fleet then moved away from them.
    with Store(tmp_path / "state.db") as store:
        for key in ("host:m60-02", "vm:vdi-02"):
            store.record_applied("lab:demo", key, data["desired_fingerprints"][key], "r-1")
        store.record_applied("lab:other", "host:m60-01", "x", "r-1")
    again = reconcile(tmp_path, "lab.yaml", "-o", "json", "--state", "state.db")
    assert again.returncode == 0, again.stderr
    redo = json.loads(again.stdout)
    statuses = {d["key"]: d["status"] for d in redo["drift"]}
    assert statuses["host:m60-02"] == "drift" and statuses["vm:vdi-02"] == "drift"
    assert {a["reason"] for a in redo["actions"] if a["target"] == "host:m60-02"} == {"drift"}
    text = reconcile(tmp_path, "lab.yaml", "--state", "state.db")
    assert "Drift:" in text.stdout and "host:m60-02" in text.stdout


def test_plan_unreadable_state_store_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text(SPEC)
    (tmp_path / "state.db").write_text("not a database\n" * 100)
    proc = reconcile(tmp_path, "lab.yaml", "--state", "state.db")
    assert proc.returncode == 1
    assert "state database state.db" in proc.stderr and "Traceback" not in proc.stderr


EXAMPLES = Path(__file__).parents[2] / "specs" / "examples"


def test_demo_examples_show_the_runbook_and_the_blockers(tmp_path: Path) -> None:
    """The lab examples against the demo fleet: IOMMU argument per CPU vendor, the host that is
    configured but not booted, a running vGPU VM deferred to its next start; the second example
    holds the capacity blocker."""
    proc = reconcile(tmp_path, str(EXAMPLES / "lab.yaml"), "-o", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    by = {(a["kind"], a["target"]): a for a in data["actions"]}
    assert "amd_iommu=on" in by[("set-kernel-cmdline", "host:amd-01")]["after"]
    assert "intel_iommu=on" in by[("set-kernel-cmdline", "host:m60-02")]["after"]
    assert "intel_iommu=on" not in by[("set-kernel-cmdline", "host:amd-01")]["after"]
    assert by[("host-cycle", "host:t4-01")]["cmdline_edit"] is False
    assert ("set-kernel-cmdline", "host:t4-01") not in by
    assert any(d["key"] == "host:t4-01" and "configured but not booted" in d["message"]
               for d in data["drift"])
    deferred = by[("update-mediated-device", "vm:vdi-01")]
    assert deferred["note"] == "takes effect at next start"
    assert ("stop-vm", "vm:vdi-01") not in by
    assert data["summary"]["blockers"] == 0

    blocked = reconcile(tmp_path, str(EXAMPLES / "lab-blocked.yaml"), "-o", "json")
    assert blocked.returncode == 1, blocked.stderr
    items = json.loads(blocked.stdout)["drift"]
    assert any(d["key"] == "vm:vdi-02" and d["status"] == "blocked"
               and "capacity" in d["message"] for d in items)


def test_detailed_exitcode_counts_changes_that_wait(tmp_path: Path) -> None:
    """t4-01 has its args configured but not booted; with reboots forbidden nothing can be done
    now, yet the fleet does not match the spec: 2, not 0."""
    (tmp_path / "lab.yaml").write_text("""\
apiVersion: gpu-reconciler/v1
engine:
  lab: {fleet: demo, state: ./state}
hostProfiles:
  - name: t4
    selector: {cluster: gpu-intel, names: ["t4-01"]}
    kernel: {iommu: true, blacklistNouveau: true}
    rollout: {reboot: never}
""")
    proc = reconcile(tmp_path, "lab.yaml", "-o", "json", "--detailed-exitcode")
    assert proc.returncode == 2, proc.stderr
    data = json.loads(proc.stdout)
    assert data["actions"] == []
    assert [d["key"] for d in data["drift"] if d["status"] == "pending"] == ["host:t4-01"]
    settled = reconcile(tmp_path, "lab.yaml", "--detailed-exitcode")
    assert settled.stdout.startswith("No changes can be made now")
