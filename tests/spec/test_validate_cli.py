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


REAL_ENGINE = ("apiVersion: gpu-reconciler/v1\nengine:\n"
               "  url: https://e.example/ovirt-engine/api\n  username: admin@internal\n"
               "  passwordFrom: {env: GPU_RECONCILER_TEST_PW}\n  caFile: certs/ca.pem\n")


def test_a_missing_ca_file_and_an_unset_password_variable_are_found_before_plan(
        validate, write, monkeypatch) -> None:
    # before: both passed validate and failed only at plan time
    monkeypatch.delenv("GPU_RECONCILER_TEST_PW", raising=False)
    spec = write("real.yaml", REAL_ENGINE)
    result = validate(str(spec), offline=False)
    assert result.code == 1
    assert result.lines == [
        f"{spec}:5:23: engine.passwordFrom.env: environment variable GPU_RECONCILER_TEST_PW is "
        "not set (or empty) here; plan and apply read the engine password from it "
        "(validate --offline skips this check where secrets are not available)",
        f"{spec}:6:11: engine.caFile: no CA file at {spec.parent / 'certs/ca.pem'} "
        "(validate --offline skips this check where secrets are not available)"]
    # with both there, it is valid; a secret's value is never read
    write("certs/ca.pem", "-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("GPU_RECONCILER_TEST_PW", "x")
    assert validate(str(spec), offline=False).code == 0
    # --offline checks the files only (pre-commit hooks, CI steps without the secret)
    monkeypatch.delenv("GPU_RECONCILER_TEST_PW")
    assert validate(str(spec), offline=True).code == 0


def test_a_password_file_and_ssh_files_must_be_there_too(validate, write) -> None:
    spec = write("f.yaml", REAL_ENGINE.replace("{env: GPU_RECONCILER_TEST_PW}",
                                               "{file: secrets/pw}")
                 + "hostAccess:\n  ssh: {knownHostsFile: known_hosts}\n")
    write("certs/ca.pem", "x")
    result = validate(str(spec), offline=False)
    assert [line.split(": ", 2)[1] for line in result.lines] == [
        "engine.passwordFrom.file", "hostAccess.ssh.knownHostsFile"]
    assert "no password file at" in result.lines[0]


def test_json_on_a_missing_path_is_still_a_json_list(validate, tmp_path) -> None:
    # before: `validate -o json MISSING` printed no JSON, only an error line
    missing = tmp_path / "nope.yaml"
    result = validate("-o", "json", str(missing))
    assert result.code == 1
    assert json.loads(result.out) == [{"file": str(missing), "line": 1, "column": 1,
                                       "path": "(file)", "message": "no such file or directory"}]
    assert "no such file or directory" in result.err
