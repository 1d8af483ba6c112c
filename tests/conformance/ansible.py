"""Running `ansible-playbook` from this venv against a lab, and reading what each task did.

The playbooks are plain `ovirt.ovirt` collection usage (the collection bundled with `ansible` 9.x
from PyPI, run unchanged); results come from the `json` stdout callback, one record per task.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler_lab.server import LabServer

PLAYBOOKS = Path(__file__).with_name("playbooks")


def ansible_playbook() -> Path:
    """`ansible-playbook` of the venv pytest runs in (the `conformance` extra installs it)."""
    return Path(sys.executable).with_name("ansible-playbook")


@dataclass(frozen=True)
class TaskResult:
    name: str
    changed: bool
    failed: bool
    result: dict[str, Any]


def run_playbook(name: str, lab: LabServer, workdir: Path, **extra: Any) -> dict[str, TaskResult]:
    """Run playbooks/<name>.yml against `lab`; results by task name. A failed task fails here."""
    exe = ansible_playbook()
    assert exe.exists(), (f"{exe} is missing: install the test extras "
                          "(pip install -e '.[test,conformance]', as `make test` does)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update({
        # The ovirt.ovirt collection as `ansible` bundles it, never one from ~/.ansible.
        "ANSIBLE_COLLECTIONS_PATH": sysconfig.get_paths()["purelib"],
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_DEPRECATION_WARNINGS": "false", "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"), "ANSIBLE_HOME": str(workdir / "home"),
        "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
    })
    variables = {
        "ansible_python_interpreter": sys.executable,
        "lab_url": lab.url, "lab_username": lab.username, "lab_password": lab.password,
        "lab_ca_file": str(lab.ca_file), **extra,
    }
    vars_file = workdir / f"{name}-vars.json"
    vars_file.write_text(json.dumps(variables))
    proc = subprocess.run(
        [str(exe), "-i", "localhost,", "-c", "local", str(PLAYBOOKS / f"{name}.yml"),
         "-e", f"@{vars_file}"],
        capture_output=True, text=True, env=env, cwd=workdir, timeout=600)
    try:
        report = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError:
        raise AssertionError(f"ansible-playbook gave no JSON report (rc {proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from None
    results: dict[str, TaskResult] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            res = task["hosts"].get("localhost", {})
            results[task["task"]["name"]] = TaskResult(
                task["task"]["name"], bool(res.get("changed")), bool(res.get("failed")), res)
    failed = {n: r.result.get("msg") for n, r in results.items() if r.failed}
    assert not failed and proc.returncode == 0, (
        f"playbook {name} failed (rc {proc.returncode}): {json.dumps(failed, indent=1)[:4000]}\n"
        f"{proc.stderr[-2000:]}")
    return results
