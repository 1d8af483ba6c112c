"""`reconcile demo` runs every stage and ends with an empty second plan, from a fresh folder and
again from its own leftovers (it resets the lab state it owns)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import LAB_SPEC, reconcile

pytestmark = pytest.mark.lab


def test_demo_runs_every_stage_from_a_reset_lab(pristine_demo: Path, tmp_path: Path) -> None:
    # leftovers of an earlier demo: the demo must start over from the fleet file
    shutil.copytree(pristine_demo, tmp_path / ".reconciler/lab/demo", symlinks=True)
    proc = reconcile("--log-level", "warning", "demo", str(LAB_SPEC), cwd=tmp_path,
                     timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reset the lab state" in proc.stdout
    for stage in ("1. validate", "2. plan", "3. apply --yes", "4. plan again"):
        assert stage in proc.stdout
    assert "[ok] wave 1: host:amd-01 deactivate" in proc.stdout
    assert proc.stdout.rstrip().endswith("the second plan has no changes.")
    assert (tmp_path / ".reconciler/lab/demo/engine.json").exists()


def test_demo_refuses_a_real_engine_spec(tmp_path: Path) -> None:
    spec = tmp_path / "real.yaml"
    spec.write_text(LAB_SPEC.read_text().replace(
        "engine:\n  lab: {fleet: demo}",
        "engine:\n  url: https://engine.example.com/ovirt-engine/api\n  username: admin@internal"
        "\n  passwordFrom: {env: OVIRT_PASSWORD}\n  caFile: ca.pem"))
    proc = reconcile("demo", str(spec), cwd=tmp_path)
    assert proc.returncode == 1
    assert "embedded lab" in proc.stderr and "Traceback" not in proc.stderr


def test_demo_does_not_reset_a_lab_state_in_use(pristine_demo: Path, tmp_path: Path) -> None:
    from reconciler_lab.statelock import state_lock
    state = tmp_path / ".reconciler/lab/demo"
    shutil.copytree(pristine_demo, state, symlinks=True)
    with state_lock(state):          # as a running `reconcile lab serve` holds it
        before = sorted(p.relative_to(state) for p in state.rglob("*"))
        proc = reconcile("demo", str(LAB_SPEC), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot reset the lab state" in proc.stderr and "in use by another process" \
        in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.relative_to(state) for p in state.rglob("*")) == before
