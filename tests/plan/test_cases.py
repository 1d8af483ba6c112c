"""Table-driven planner tests: every file in cases/ holds desired + observed + expectations."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.plan import plan
from reconciler.plan.result import Plan
from tests.plan.factsload import desired_from, load_cases, observed_from

CASES_DIR = Path(__file__).parent / "cases"


def _all_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in load_cases(path):
            params.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return params


def run_case(case: dict[str, Any]) -> Plan:
    desired = desired_from(case.get("desired"))
    observed = observed_from(case.get("observed"))
    applied = case.get("applied")
    if applied:
        first = plan(desired, observed)
        applied = {k: (first.desired_fingerprints[k] if v == "desired" else v)
                   for k, v in applied.items()}
    return plan(desired, observed, applied)


def _line(action: Any) -> str:
    return f"{action.kind} {action.target} {action.disruption.value}"


@pytest.mark.parametrize("case", _all_cases())
def test_case(case: dict[str, Any]) -> None:
    result = run_case(case)
    expect = case["expect"]
    if "actions" in expect:
        assert [_line(a) for a in result.actions] == expect["actions"]
    for index, name, value in expect.get("fields", ()):
        got = getattr(result.actions[index], name)
        got = got.value if hasattr(got, "value") and not isinstance(got, (str, int)) else got
        if isinstance(got, tuple):
            got = list(got)
        assert got == value, f"action {index} ({result.actions[index].kind}).{name}"
    for index, field, op, value in expect.get("verify", ()):
        checks = [(v.field, v.op, v.value) for v in result.actions[index].verify]
        assert (field, op, value) in checks, checks
    blocked = [d for d in result.drift if d.status == "blocked"]
    expected_blocked = expect.get("blocked", [])
    assert len(blocked) == len(expected_blocked), [b.message for b in blocked]
    for key, text in expected_blocked:
        assert any(b.key == key and text in b.message for b in blocked), (
            f"no blocker on {key} containing {text!r}: {[b.message for b in blocked]}")
    # every blocker names the spec entry it comes from
    assert all(b.location for b in blocked), [b.message for b in blocked if not b.location]
    if "drift" in expect:
        got = sorted(f"{d.status} {d.key}" for d in result.drift if d.status != "blocked")
        assert got == sorted(expect["drift"])
    for text in expect.get("drift_messages", ()):
        assert any(text in d.message for d in result.drift), [d.message for d in result.drift]
    for key, text in expect.get("warnings", ()):
        assert any(w.key == key and text in w.message for w in result.warnings), (
            f"no warning on {key} containing {text!r}: {[w.message for w in result.warnings]}")
    if "warning_count" in expect:
        assert len(result.warnings) == expect["warning_count"] == result.summary.warnings
    for text in expect.get("notes", ()):
        assert any(text in n.message for n in result.notes), [n.message for n in result.notes]
    if "waves" in expect:
        assert [list(w.hosts) for w in result.waves] == expect["waves"]
    if "reboot" in expect:
        assert list(result.summary.hosts_to_reboot) == expect["reboot"]
    if "restart" in expect:
        assert list(result.summary.vms_to_restart) == expect["restart"]
    if "seats" in expect:
        assert {s.mdev_type: [s.before, s.after] for s in result.summary.seats} == expect["seats"]
    assert result.summary.changes == len(result.actions)
    assert result.summary.blockers == len(blocked)
