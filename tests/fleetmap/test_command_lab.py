"""`reconcile fleet` end to end against the embedded lab (the command starts it)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def child_pythonpath() -> str:
    """This checkout for the child, after what the run put first (the mark guard's watcher)."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(REPO)) if p)
SCHEMA = json.loads((REPO / "schemas" / "fleet.schema.json").read_text())


def fleet(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", "--log-level", "warning", "fleet",
                           str(REPO / "specs/examples/lab.yaml"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=240,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": child_pythonpath(),
                               "HOME": str(cwd)})


def test_demo_fleet_text_and_json(tmp_path: Path) -> None:
    proc = fleet(tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    # vdi-01's vGPU on its physical GPU of m60-01, the H100 held by ml-01
    m60 = text[text.index("  m60-01 "):text.index("  m60-02 ")]
    assert re.search(r"0000:05:00\.0 +GM204GL \[Tesla M60\] +vGPU nvidia-18 GRID M60-2Q 1/4 seats: "
                     r"vdi-01 \(up\)", m60), m60
    assert re.search(r"0000:e1:00\.0 +GH100 \[H100 PCIe\] +passthrough -> ml-01 \(down\)", text)
    assert "held by the host driver nouveau" in text          # the Quadro on amd-01
    assert re.search(r"gpu-intel +nvidia-18 +GRID M60-2Q +1 +31 +32", text)
    proc = fleet(tmp_path, "-o", "json", "--out", "fleet.json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "fleet.json").read_text())
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    hosts = {h["name"]: h for c in data["clusters"] for h in c["hosts"]}
    assert hosts["m60-01"]["probe_cpu_vendor"] == "intel"
    assert hosts["amd-01"]["probe_cpu_vendor"] == "amd"
    (vdi,) = hosts["m60-01"]["gpus"][0]["vms"]
    assert (vdi["name"], vdi["via"]) == ("vdi-01", "mdev")
