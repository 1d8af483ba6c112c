"""A saved plan runs only as it was reviewed and only on the engine it was made for: an edited
action, a changed spec file, another engine or a broken file is refused with one clear line,
before any request that changes the fleet (the lab's request log shows none)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler_lab.server import LabServer

from .conftest import TIME_SCALE, api_mutations, reconcile

pytestmark = pytest.mark.lab


def _plan_file(lab: Any, tmp_path: Path) -> Path:
    plan_file = tmp_path / "plan.json"
    proc = reconcile("plan", str(lab.spec), "--state", str(lab.store), "--out", str(plan_file))
    assert plan_file.exists(), proc.stdout + proc.stderr
    lab.server.clear_request_log()
    return plan_file


def _apply(lab: Any, plan_file: Path, cwd: Path | None = None) -> Any:
    return reconcile("apply", "--state", str(lab.store), str(plan_file), cwd=cwd)


def _edit(plan_file: Path, change: Any) -> None:
    data = json.loads(plan_file.read_text())
    change(data)
    plan_file.write_text(json.dumps(data))


def _action(data: dict[str, Any], kind: str, target: str) -> dict[str, Any]:
    return next(a for a in data["actions"] if a["kind"] == kind and a["target"] == target)


def _refused(lab: Any, proc: Any, *phrases: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for phrase in phrases:
        assert phrase in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not api_mutations(lab.server.request_log)


def _append_to_cmdline(data: dict[str, Any]) -> None:
    action = _action(data, "set-kernel-cmdline", "host:amd-01")
    action["cmdline"] += "; rm -rf /"


def _iommu_off(data: dict[str, Any]) -> None:
    action = _action(data, "set-kernel-cmdline", "host:amd-01")
    action["cmdline"] = action["cmdline"].replace("amd_iommu=on", "amd_iommu=off")


def _foreign_modprobe_line(data: dict[str, Any]) -> None:
    action = _action(data, "write-modprobe-file", "host:amd-01")
    action["content"] += "install nvidia /bin/false\n"


def _no_host_cycles(data: dict[str, Any]) -> None:
    data["actions"] = [a for a in data["actions"] if a["kind"] != "host-cycle"]


def _extra_stop(data: dict[str, Any]) -> None:
    stop = dict(_action(data, "stop-vm", "vm:vdi-03"))
    stop["target"] = "vm:vdi-01"
    data["actions"].insert(0, stop)


@pytest.mark.parametrize("edit", [_append_to_cmdline, _iommu_off, _foreign_modprobe_line,
                                  _no_host_cycles, _extra_stop])
def test_an_edited_action_is_refused(served_lab, tmp_path: Path, edit: Any) -> None:
    lab = served_lab()
    plan_file = _plan_file(lab, tmp_path)
    _edit(plan_file, edit)
    _refused(lab, _apply(lab, plan_file), "the plan file was edited after it was made",
             "Nothing was changed")


def test_a_changed_spec_file_is_refused(served_lab, tmp_path: Path) -> None:
    lab = served_lab()
    plan_file = _plan_file(lab, tmp_path)
    lab.spec.write_text(lab.spec.read_text() + "\n# reviewed? no\n")
    _refused(lab, _apply(lab, plan_file), f"the spec file {lab.spec.resolve()} changed since "
                                          "the plan was made")


def test_a_plan_made_for_another_engine_is_refused(served_lab, tmp_path: Path) -> None:
    """The same URL, CA and fleet, but a rebuilt engine (a new installation id)."""
    lab = served_lab()
    plan_file = _plan_file(lab, tmp_path)
    port, tls = lab.server.port, lab.state / "tls"
    lab.server.stop()
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    shutil.copytree(tls, rebuilt / "tls")
    with LabServer("demo", rebuilt, port=port, time_scale=TIME_SCALE,
                   password=lab.server.password) as other:
        proc = _apply(lab, plan_file)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "the plan was made for another engine" in proc.stderr, proc.stderr
        assert not api_mutations(other.request_log)


@pytest.mark.parametrize("text", ["", "{", '{"format_version": 1, "actions": 3}', "[1, 2]",
                                  '{"format_version": "x"}', "\x00\xff"])
def test_a_broken_plan_file_is_a_clear_error(served_lab, tmp_path: Path, text: str) -> None:
    lab = served_lab()
    plan_file = tmp_path / "broken.json"
    plan_file.write_bytes(text.encode("utf-8", "surrogateescape") if text else b"")
    proc = _apply(lab, plan_file)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: ") and str(plan_file) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_an_unchanged_plan_applies_from_another_folder(served_lab, tmp_path: Path) -> None:
    lab = served_lab(hostProfiles=[], vms=[{"name": "vdi-02", "restart": "allowed",
                                            "vgpu": {"type": "nvidia-231", "instances": 2}}])
    plan_file = _plan_file(lab, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _apply(lab, plan_file, cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert api_mutations(lab.server.request_log)
    assert os.path.isabs(json.loads(plan_file.read_text())["sources"][0])
