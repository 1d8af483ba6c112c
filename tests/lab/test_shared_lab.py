"""A controller on the embedded demo lab, and `plan` and `lab drift` beside it: one lab, shared.

Before, the controller's lab held the state folder and the two commands failed with "the lab
state in ... is in use by another process"."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import waiting

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", NO_COLOR="1")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "--log-level", "warning", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=180, env=_env())


def test_plan_and_lab_drift_use_the_controllers_lab(tmp_path: Path) -> None:
    body = yaml.safe_load((REPO / "specs/examples/lab.yaml").read_text())
    body["engine"] = {"lab": {"fleet": "demo", "state": "lab-state"}}
    spec = tmp_path / "lab.yaml"
    spec.write_text(yaml.safe_dump(body, sort_keys=False))
    log = (tmp_path / "controller.log").open("w")
    controller = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "--log-format", "json", "controller", str(spec),
         "--mode", "observe", "--resync", "1s", "--listen", "127.0.0.1:0",
         "--state", str(tmp_path / "state.db")],
        stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, env=_env())
    try:
        def url() -> str | None:
            assert controller.poll() is None, (tmp_path / "controller.log").read_text()
            found = re.search(r'"url": "(http://127\.0\.0\.1:\d+)"',
                              (tmp_path / "controller.log").read_text())
            return found.group(1) if found else None

        base = waiting.wait_for(url, what="the controller's status server")

        def ready() -> bool:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=5) as answer:
                    return answer.status == 200
            except OSError:
                return False

        waiting.wait_for(ready, what="the controller's first pass")
        assert (tmp_path / "lab-state" / "serving.json").exists()

        planned = _cli("plan", str(spec), "--detailed-exitcode", "-o", "json", cwd=tmp_path)
        assert planned.returncode == 2, planned.stderr          # changes wait; no error
        assert "in use by another process" not in planned.stderr
        assert json.loads(planned.stdout)["actions"]

        drifted = _cli("lab", "drift", "--fleet", "demo", "--state", "lab-state",
                       "--kind", "vgpu-removed", "--vm", "vdi-01", cwd=tmp_path)
        assert drifted.returncode == 0, drifted.stderr
        assert "vm vdi-01: mediated devices removed (through the running lab)" in drifted.stdout

        def sees_it() -> bool:
            with urllib.request.urlopen(base + "/status", timeout=5) as answer:
                status = json.loads(answer.read())
            return any(i["key"] == "vm:vdi-01" and "add 1 x vGPU nvidia-18" in i["message"]
                       for i in status["drift"]["items"])

        waiting.wait_for(sees_it, what="the controller to see the out-of-band change")
    finally:
        controller.send_signal(signal.SIGTERM)
        controller.wait(60)
        log.close()
    assert not (tmp_path / "lab-state" / "serving.json").exists()
