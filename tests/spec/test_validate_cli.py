"""`reconcile validate`: summaries, every error at once, JSON output, bad paths, examples."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.spec.conftest import EXAMPLES, REPO


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.y*ml")))
def test_every_example_validates(in_repo, validate, example) -> None:
    result = validate(f"specs/examples/{example}")
    assert result.code == 0, result.out
    assert result.out == ""
    assert "1 file valid:" in result.err


def test_examples_folder_validates_file_by_file(in_repo, validate) -> None:
    result = validate("--each", "specs/examples")
    assert result.code == 0, result.out
    assert "valid, each on its own" in result.err


def test_our_examples_count_what_they_hold(in_repo, validate) -> None:
    result = validate("specs/examples/vgpu-fleet.yaml")
    assert "1 file valid: 1 host profile, 5 VMs" in result.err


def test_every_error_is_reported_at_once(write, validate) -> None:
    spec = write("many.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"
                              "vms:\n  - name: a\n    vgpu: {type: nvidia-22, instances: 99}\n"
                              "  - name: b\n    vgpu: {tpye: nvidia-22}\n  - name: a\n"
                              "    restart: sometimes\n")
    result = validate(str(spec))
    assert result.code == 1
    assert result.lines == [
        f"{spec}:5:40: vms[0].vgpu.instances: must be <= 64",
        f"{spec}:7:12: vms[1].vgpu.tpye: unknown key 'tpye' (did you mean 'type'?)",
        f"{spec}:8:5: vms[2]: a VM needs passthrough, vgpu, or both",
        f"{spec}:8:11: vms[2].name: VM 'a' is already defined at {spec}:4",
        f"{spec}:9:14: vms[2].restart: must be one of: whenDown, allowed, never",
    ]
    assert "5 problems in 1 file" in result.err


def test_json_output_is_a_list_and_empty_when_valid(in_repo, validate) -> None:
    result = validate("-o", "json", "specs/examples/mixed-fleet.yaml")
    assert result.code == 0 and json.loads(result.out) == []


def test_missing_path_is_a_clear_error(validate, tmp_path) -> None:
    result = validate(str(tmp_path / "nope.yaml"))
    assert result.code == 1
    assert result.err.strip() == f"error: {tmp_path / 'nope.yaml'}: no such file or directory"


def test_no_traceback_as_a_real_process(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\nvms: [\n")
    proc = subprocess.run([sys.executable, "-m", "reconciler", "validate", str(bad)],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout.startswith(f"{bad}:3:6: (document): YAML syntax error: '[' is not closed")
    assert "Traceback" not in proc.stderr


def test_an_empty_path_is_one_problem_not_two(write, validate) -> None:
    spec = write("e.yaml", "apiVersion: gpu-reconciler/v1\nengine: {lab: {fleet: demo}}\n"
                           "hostAccess: {ssh: {identityFile: ''}}\n")
    result = validate(str(spec))
    assert result.code == 1
    assert result.lines == [f"{spec}:3:34: hostAccess.ssh.identityFile: must not be empty"]


def test_an_unparsable_engine_url_is_an_issue_not_a_crash(write, validate) -> None:
    spec = write("u.yaml", "apiVersion: gpu-reconciler/v1\nengine:\n"
                           "  url: https://]e.example.com/ovirt-engine/api\n"
                           "  username: admin@internal\n  passwordFrom: {env: P}\n  caFile: ca.pem\n")
    result = validate(str(spec))
    assert result.code == 1
    assert result.lines == [f"{spec}:3:8: engine.url: 'https://]e.example.com/ovirt-engine/api' "
                            "is not a valid URL (Invalid IPv6 URL)"]
