"""Warnings: risks the fleet already has that a plan leaves alone. Shown in every rendering,
counted in the summary, kept by saved plans, never a reason to fail."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema

from reconciler.plan.render_json import render_json
from reconciler.plan.render_markdown import render_markdown
from reconciler.plan.render_text import render_text
from reconciler.plan.result import Plan, PlanWarning, Summary, plan_from_dict, plan_to_dict

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "plan.schema.json").read_text())
RISK = PlanWarning("vm:ml-01", "attached today and left as it is, but device pci_0000_e1_00_0 "
                   "is bound to the host driver nouveau; add 10de:2331 to kernel.pciStub",
                   "specs/fleet.yaml:12:3")


def _plan() -> Plan:
    return Plan(warnings=(RISK,), summary=Summary(warnings=1))


def test_text_lists_warnings_and_counts_them() -> None:
    text = render_text(_plan())
    assert "Warnings (existing risks this plan does not change):" in text
    assert "  ! vm:ml-01: attached today" in text and "(specs/fleet.yaml:12:3)" in text
    assert text.rstrip().endswith("0 changes, 0 blockers, 1 warning.")
    assert text.startswith("No changes. The fleet matches the spec.")


def test_markdown_shows_warnings_in_the_head() -> None:
    md = render_markdown(_plan())
    assert "| Warnings | 1 |" in md and "**Warnings** (existing risks" in md
    assert "`vm:ml-01`: attached today" in md


def test_json_round_trips_and_matches_the_schema() -> None:
    data = json.loads(render_json(_plan()))
    jsonschema.validate(data, SCHEMA)
    assert data["warnings"] == [RISK.to_dict()] and data["summary"]["warnings"] == 1
    assert plan_from_dict(plan_to_dict(_plan())).warnings == (RISK,)


def test_a_plan_without_warnings_keeps_its_json_form() -> None:
    data = plan_to_dict(replace(_plan(), warnings=(), summary=Summary()))
    assert "warnings" not in data and "warnings" not in data["summary"]
    jsonschema.validate(json.loads(json.dumps(data)), SCHEMA)
