"""The controller's fleet map against the lab: the page at /, /fleet.json and the fleet series."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler_lab.server import LabServer

from .conftest import write_spec

pytestmark = pytest.mark.lab

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "fleet.schema.json").read_text())


def test_controller_serves_the_fleet_map(lab: LabServer, tmp_path: Path,
                                         start_controller: Any) -> None:
    spec = write_spec(lab, tmp_path / "specs")
    ctl = start_controller(str(spec.parent), "--state", str(tmp_path / "state.db"),
                           "--resync", "10m")
    ctl.wait_ready()
    code, page = ctl.get("/")
    assert code == 200 and "<title>Fleet GPU map</title>" in page and '"live":true' in page
    code, body = ctl.get("/fleet.json")
    assert code == 200
    data = json.loads(body)
    jsonschema.Draft202012Validator(SCHEMA).validate(data)
    hosts = {h["name"]: h for c in data["clusters"] for h in c["hosts"]}
    gpus = {(h["name"], g["address"]): g for h in hosts.values() for g in h["gpus"]}
    vdi = gpus[("m60-01", "0000:05:00.0")]
    # This spec gives no host access: the engine's seats count, but which GPU holds vdi-01's
    # vGPU needs the host's mdevs, so the VM is listed with its host only.
    assert (vdi["mode"], vdi["vgpu_type"], vdi["seats_used"], vdi["vms"]) == \
        ("vgpu", "nvidia-18", 1, [])
    assert hosts["m60-01"]["vgpu_vms_unplaced"] == ["vdi-01"]
    assert hosts["m60-01"]["probe_note"] == "not probed"
    code, compact = ctl.get("/fleet-page.json")
    assert code == 200 and json.loads(compact)["live"] is True
    used = {}
    for family in text_string_to_metric_families(ctl.metrics()):
        for s in family.samples:
            if s.name == "gpu_reconciler_vgpu_seats_used":
                used[(s.labels["cluster"], s.labels["type"])] = s.value
    assert used[("gpu-intel", "nvidia-18")] == 1
