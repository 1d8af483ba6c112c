"""Saved plans round-trip exactly, and stale checks name the fields that changed."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
import yaml

from reconciler.errors import PlanError
from reconciler.model.facts import Observed
from reconciler.plan import plan
from reconciler.plan.actions import ACTION_TYPES, Disruption, action_from_dict
from reconciler.plan.render_json import render_json
from reconciler.plan.result import plan_to_dict
from reconciler.plan.planfile import load_plan, save_plan, stale_objects
from tests.plan.factsload import desired_from, observed_from

HERE = Path(__file__).parent


def _showcase() -> tuple[object, Observed]:
    data = yaml.safe_load((HERE / "showcase.yaml").read_text())
    return desired_from(data["desired"]), observed_from(data["observed"])


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    desired, observed = _showcase()
    p = plan(desired, observed)  # type: ignore[arg-type]
    path = tmp_path / "sub" / "plan.json"
    save_plan(p, path)
    loaded = load_plan(path)
    assert loaded == p
    assert loaded.snapshots == p.snapshots
    assert render_json(loaded, include_observed=True) == path.read_text()
    saved = json.loads(path.read_text())
    schema = json.loads((HERE.parents[1] / "schemas" / "plan.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(saved)
    assert saved["sources"] == ["specs/fleet.yaml", "specs/vms.yaml"]
    assert set(saved["observed"]) == set(saved["fingerprints"])


def test_every_action_kind_round_trips() -> None:
    for kind, cls in ACTION_TYPES.items():
        action = cls(target="vm:x", before="a", after=None, disruption=Disruption.VM_RESTART,
                     reason="prune", description=kind)  # type: ignore[arg-type]
        assert action_from_dict(json.loads(json.dumps(action.to_dict()))).to_dict() == \
            action.to_dict()


def test_nothing_changed_means_not_stale() -> None:
    desired, observed = _showcase()
    p = plan(desired, observed)  # type: ignore[arg-type]
    assert stale_objects(p, observed) == []


def test_stale_objects_name_the_field(tmp_path: Path) -> None:
    desired, observed = _showcase()
    save_plan(plan(desired, observed), tmp_path / "p.json")  # type: ignore[arg-type]
    p = load_plan(tmp_path / "p.json")
    vms = tuple(replace(v, status="down", host=None) if v.name == "render-01" else v
                for v in observed.vms)
    hosts = tuple(replace(h, custom_kernel_cmdline="intel_iommu=off") if h.name == "gpu-02"
                  else h for h in observed.hosts)
    changed = replace(observed, vms=vms, hosts=hosts)
    stale = {s.key: s.what_changed for s in stale_objects(p, changed)}
    assert set(stale) == {"vm:render-01", "host:gpu-02"}
    assert "vm:render-01 status up -> down" in stale["vm:render-01"]
    assert "vm:render-01 host gpu-01 -> null" in stale["vm:render-01"]
    assert ("host:gpu-02 custom_kernel_cmdline \"rdblacklist=nouveau intel_iommu=on\" -> "
            "intel_iommu=off") in stale["host:gpu-02"]


def test_vanished_object_and_probe_change_are_stale() -> None:
    desired, observed = _showcase()
    p = plan(desired, observed)  # type: ignore[arg-type]
    probes = tuple(replace(pr, loaded_modules=("nvidia",), seconds=9.0) for pr in observed.probes)
    changed = replace(observed, vms=tuple(v for v in observed.vms if v.name != "cad-ws-01"),
                      probes=probes)
    stale = {s.key: s.what_changed for s in stale_objects(p, changed)}
    assert stale["vm:cad-ws-01"] == "vm:cad-ws-01 no longer exists"
    assert "probe.loaded_modules" in stale["host:gpu-01"]
    assert "seconds" not in stale["host:gpu-01"]      # timings never make a plan stale


def test_bad_plan_files_are_plan_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError, match="invalid JSON"):
        load_plan(bad)
    bad.write_text(json.dumps({"format_version": 99}))
    with pytest.raises(PlanError, match="format_version 99"):
        load_plan(bad)
    desired, observed = _showcase()
    data = plan_to_dict(plan(desired, observed))  # type: ignore[arg-type]
    data["actions"][0]["kind"] = "reformat-disk"
    bad.write_text(json.dumps(data))
    with pytest.raises(PlanError, match="unknown action kind 'reformat-disk'"):
        load_plan(bad)
    with pytest.raises(PlanError, match="cannot read plan"):
        load_plan(tmp_path / "missing.json")


def test_the_former_module_name_still_imports() -> None:
    from reconciler.plan import planfile, saved
    assert saved.load_plan is planfile.load_plan and saved.stale_objects is planfile.stale_objects
