"""`reconcile observe` and `reconcile export` end to end, on the embedded lab engine."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import yaml

from reconciler.cli import main

from .conftest import lab_modules

pytestmark = pytest.mark.lab
ROOT = Path(__file__).resolve().parents[2]


def write_spec(folder: Path, fleet, with_profile: bool = True) -> Path:
    lab_modules()
    spec = {"apiVersion": "gpu-reconciler/v1",
            "engine": {"lab": {"fleet": "demo", "state": "lab-state"}}}
    if with_profile:
        gpu_cluster = next(h.cluster for h in fleet.hosts if h.devices)
        spec["hostProfiles"] = [{"name": "gpu", "selector": {"cluster": gpu_cluster},
                                 "kernel": {"iommu": True, "blacklistNouveau": True}}]
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_observe_json_matches_the_schema(tmp_path, capsys, fleets):
    fleet = fleets.load_fleet("demo")
    spec = write_spec(tmp_path, fleet)
    assert main(["--log-level", "error", "observe", str(spec), "-o", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    jsonschema.validate(data, json.loads((ROOT / "schemas/observed.schema.json").read_text()))
    gpu_cluster = next(h.cluster for h in fleet.hosts if h.devices)
    managed = {h.name for h in fleet.hosts if h.cluster == gpu_cluster}
    assert {h["name"] for h in data["hosts"]} == managed
    assert data["stats"]["engine_requests"] == 3
    assert {p["host"] for p in data["probes"]} == managed
    assert data["stats"]["hosts_probed"] == len(managed)
    # the three-way kernel view: t4-01 has the args configured in the engine but not booted
    t4 = {v["key"]: v for v in data["kernel_args"]["t4-01"]}
    assert t4["intel_iommu"] == {"key": "intel_iommu", "desired": "intel_iommu=on",
                                 "configured": "intel_iommu=on", "booted": None,
                                 "waiting_for_reboot": True}
    assert set(data["kernel_args"]) == managed


def test_observe_text_summary(tmp_path, capsys, fleets):
    fleet = fleets.load_fleet("demo")
    spec = write_spec(tmp_path, fleet)
    assert main(["--log-level", "error", "observe", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "HOSTS" in out and "FREE vGPU INSTANCES" in out
    assert "KERNEL ARGS (desired | configured | booted)" in out
    assert re.search(r"engine requests: 3, hosts probed: \d+, failures: 0, seconds: [\d.]+\n$",
                     out)
    for h in fleet.hosts:
        if any(d.mdev_types for d in h.devices):
            assert h.name in out


def test_observe_no_probe(tmp_path, capsys, fleets):
    spec = write_spec(tmp_path, fleets.load_fleet("demo"))
    assert main(["--log-level", "error", "observe", str(spec), "-o", "json", "--no-probe"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["probes"] == [] and data["stats"]["hosts_probed"] == 0


def test_observe_bad_spec_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: gpu-reconciler/v1\nengine: {url: 3}\n")
    bad.write_text("apiVersion: gpu-reconciler/v1\nengine: {url: 3}\nvms: [{name: 1}]\n")
    for command in ("observe", "export"):
        assert main([command, str(bad)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err
        # every problem on its own line, located, as validate and plan print them
        lines = err.strip().splitlines()
        assert len(lines) >= 2 and all(line.startswith(f"{bad}:") for line in lines), err


def _export(tmp_path, fleet_ref, fleet):
    spec = tmp_path / "fleet.yaml"
    spec.write_text(yaml.safe_dump({"apiVersion": "gpu-reconciler/v1",
                                    "engine": {"lab": {"fleet": fleet_ref, "state": "lab-state"}}}))
    out = tmp_path / "exported.yaml"
    assert main(["--log-level", "error", "export", str(spec), "-o", str(out)]) == 0
    exported = yaml.safe_load(out.read_text())
    jsonschema.validate(exported, json.loads((ROOT / "schemas/spec.schema.json").read_text()))
    assert exported["engine"] == {"lab": {"fleet": fleet_ref, "state": "lab-state"}}
    gpu_hosts = {h.name for h in fleet.hosts if any(d.vendor_id == "10de" for d in h.devices)}
    selected = {n for p in exported.get("hostProfiles", []) for n in p["selector"]["names"]}
    assert gpu_hosts <= selected
    gpu_vms = {v.name for v in fleet.vms if v.host_devices or v.mediated_devices}
    assert {v["name"] for v in exported.get("vms", [])} == gpu_vms
    return out


def _plan(out, capsys, code=0):
    capsys.readouterr()
    assert main(["--log-level", "error", "plan", str(out), "-o", "json"]) == code
    return json.loads(capsys.readouterr().out)


def test_export_of_the_demo_fleet_plans_no_changes(tmp_path, capsys, fleets):
    lab_modules()
    fleet = fleets.load_fleet("demo")
    out = _export(tmp_path, "demo", fleet)
    plan = _plan(out, capsys)            # exit 0: nothing blocks
    # Hosts whose engine args were set but never booted keep them, with rollout.reboot: never:
    # adopting a fleet reboots nothing, and the plan lists them as waiting for a reboot.
    waiting = {f"host:{h.name}" for h in fleet.hosts
               if h.custom_kernel_cmdline.split() != h.booted_custom_args.split()}
    assert waiting
    assert plan["actions"] == [], plan["actions"]
    assert plan["summary"]["drift"] == 0 and plan["summary"]["vms_to_restart"] == []
    pending = {d["key"] for d in plan["drift"] if d["status"] == "pending"}
    assert pending == waiting
    assert all("rollout.reboot is never" in d["message"] for d in plan["drift"]
               if d["status"] == "pending")
    text = out.read_text()
    assert all(f"{key.split(':')[1]}" in text.splitlines()[1] for key in waiting)
    # A real risk of the demo fleet stays visible, as a warning with its fix: ml-01's H100 is
    # attached while the host's nouveau driver holds it. The plan changes nothing there, so it
    # blocks nothing.
    assert plan["summary"]["blockers"] == 0
    assert [(w["key"], "bound to the host driver nouveau" in w["message"],
             "add 10de:2331 to kernel.pciStub" in w["message"]) for w in plan["warnings"]] == [
        ("vm:ml-01", True, True)]
    # consoles, the vGPU manager and placement as they are
    exported = yaml.safe_load(text)
    vgpu = {p["selector"]["names"][0]: p.get("vgpu") for p in exported["hostProfiles"]}
    assert vgpu["amd-01"] == {"manager": "absent"}
    assert vgpu["m60-01"] == {"manager": "required", "placement": "consolidated"}


def test_export_of_a_settled_fleet_plans_no_changes(tmp_path, capsys, fleets):
    lab_modules()
    demo = fleets.load_fleet("demo")
    settled = replace(demo, hosts=tuple(replace(h, booted_custom_args=h.custom_kernel_cmdline)
                                        for h in demo.hosts))
    path = tmp_path / "settled.yaml"
    path.write_text(fleets.dump_fleet(settled))
    plan = _plan(_export(tmp_path, str(path), settled), capsys)
    assert plan["actions"] == [], plan["actions"]
    assert plan["summary"]["drift"] == 0


def test_export_elsewhere_keeps_relative_paths_valid(tmp_path, capsys, fleets):
    lab_modules()
    from reconciler.commands.export import rebase_paths

    src = tmp_path / "specs"
    src.mkdir()
    spec = src / "fleet.yaml"
    spec.write_text(yaml.safe_dump({"apiVersion": "gpu-reconciler/v1",
                                    "engine": {"lab": {"fleet": "demo", "state": "lab-state"}}}))
    out = tmp_path / "exports" / "now.yaml"
    assert main(["--log-level", "error", "export", str(spec), "-o", str(out)]) == 0
    exported = yaml.safe_load(out.read_text())
    assert exported["engine"] == {"lab": {"fleet": "demo", "state": "../specs/lab-state"}}
    plan = _plan(out, capsys)            # the same lab state, reached from the new folder
    assert plan["actions"] == []

    block = {"url": "https://e/ovirt-engine/api", "caFile": "ca.pem",
             "passwordFrom": {"file": "/run/secrets/pw"},
             "ssh": {"knownHostsFile": "~/.ssh/known_hosts", "identityFile": "keys/id"},
             "localRoots": "roots"}
    moved = rebase_paths(block, tmp_path / "a", tmp_path / "b" / "c")
    assert moved["caFile"] == "../../a/ca.pem" and moved["localRoots"] == "../../a/roots"
    assert moved["passwordFrom"]["file"] == "/run/secrets/pw"
    assert moved["ssh"] == {"knownHostsFile": "~/.ssh/known_hosts",
                            "identityFile": "../../a/keys/id"}
    assert block["caFile"] == "ca.pem"                      # the input is not changed
