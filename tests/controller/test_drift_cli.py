"""`reconcile drift`: exit codes, first-seen times kept across runs, the three renderings."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler_lab.server import LabServer

from .conftest import mutating_requests, remove_vgpus, run_cli, sdk_connection, write_spec


@pytest.mark.lab
def test_drift_exit_codes_and_first_seen(lab: LabServer, tmp_path: Path) -> None:
    spec = write_spec(lab, tmp_path / "specs")
    state = str(tmp_path / "state.db")

    in_sync = run_cli("drift", str(spec), "--state", state, cwd=tmp_path)
    assert in_sync.returncode == 0, in_sync.stderr
    assert in_sync.stdout.startswith("In sync:")

    conn = sdk_connection(lab)
    try:
        remove_vgpus(conn, "vdi-01")
    finally:
        conn.close()
    writes_before = mutating_requests(lab)

    first = run_cli("drift", str(spec), "--state", state, "-o", "json", cwd=tmp_path)
    assert first.returncode == 2, first.stderr
    report = json.loads(first.stdout)
    assert report["in_sync"] is False
    item = next(i for i in report["items"] if i["key"] == "vm:vdi-01")
    # The first run saw vdi-01 matching the spec: losing its vGPU since is drift (the fleet
    # moved), not a pending spec change.
    assert item["class"] == "drift"
    assert item["since"] is not None
    assert item["location"] and item["location"].startswith(f"{spec}:")
    kinds = [c["kind"] for c in item["changes"]]
    assert kinds == ["add-mediated-device"]
    assert item["changes"][0]["disruption"] == "vm-restart"

    second = run_cli("drift", str(spec), "--state", state, "-o", "json", cwd=tmp_path)
    assert second.returncode == 2
    again = next(i for i in json.loads(second.stdout)["items"] if i["key"] == "vm:vdi-01")
    assert again["since"] == item["since"]          # first seen in the earlier run

    text = run_cli("drift", str(spec), "--state", state, cwd=tmp_path)
    assert text.returncode == 2
    assert "Out of sync" in text.stdout and "vm:vdi-01" in text.stdout
    assert "since " in text.stdout and "add-mediated-device [vm-restart]" in text.stdout

    markdown = run_cli("drift", str(spec), "--state", state, "-o", "markdown", cwd=tmp_path)
    assert markdown.returncode == 2
    assert "| `vm:vdi-01` | drift |" in markdown.stdout

    assert mutating_requests(lab) == writes_before          # drift only reads


@pytest.mark.slow        # waits out the engine client's connect retries to a closed port
def test_drift_errors_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: gpu-reconciler/v1\nengine: {url: 3}\n")
    done = run_cli("drift", str(bad), "--state", str(tmp_path / "s.db"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"{bad}:2:" in done.stderr
    assert "Traceback" not in done.stderr

    unreachable = tmp_path / "down.yaml"
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    unreachable.write_text(
        "apiVersion: gpu-reconciler/v1\nengine:\n  url: https://127.0.0.1:9/ovirt-engine/api\n"
        f"  username: admin@internal\n  passwordFrom: {{file: {secret}}}\n"
        "  insecure: true\n")
    done = run_cli("drift", str(unreachable), "--state", str(tmp_path / "s.db"), cwd=tmp_path)
    assert done.returncode == 1
    # Retry warnings may come first (log lines); the last line is the one error message.
    assert done.stderr.splitlines()[-1].startswith("error:") and "Traceback" not in done.stderr


@pytest.mark.slow        # runs the CLI in child processes
def test_usage_errors_exit_1_not_the_out_of_sync_code(tmp_path: Path) -> None:
    missing = run_cli("drift", cwd=tmp_path)
    assert missing.returncode == 1 and "required: SPEC" in missing.stderr
    bad_format = run_cli("drift", "x.yaml", "-o", "yaml", cwd=tmp_path)
    assert bad_format.returncode == 1 and "invalid choice" in bad_format.stderr
    bad_duration = run_cli("controller", "specs", "--resync", "0s", cwd=tmp_path)
    assert bad_duration.returncode == 1 and "more than 0" in bad_duration.stderr
