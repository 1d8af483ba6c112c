"""`reconcile plan` end to end against the embedded lab engine (started by the command itself)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from reconciler.plan.saved import load_plan

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


def reconcile(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "--log-level", "warning", "plan",
                           *args], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env={"PATH": "/usr/bin:/bin", "NO_COLOR": "1"})


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
