"""The shared vocabulary: one order for drift statuses, wire values unchanged."""
from __future__ import annotations

import json

from reconciler import drift
from reconciler.model.vocab import Disruption, DriftStatus, StepOutcome
from reconciler.plan import actions
from reconciler.plan.render_text import drift_lines
from reconciler.plan.result import DriftItem


def test_drift_statuses_in_one_order_most_urgent_first() -> None:
    assert [s.value for s in sorted(DriftStatus, key=lambda s: s.rank)] == [
        "blocked", "drift", "pending", "unmanaged"]
    assert [s for s in DriftStatus if s.out_of_sync] == [
        DriftStatus.BLOCKED, DriftStatus.DRIFT, DriftStatus.PENDING]


def test_members_are_their_wire_values() -> None:
    assert DriftStatus.PENDING == "pending" and f"{DriftStatus.PENDING}" == "pending"
    assert json.dumps({"status": DriftStatus.BLOCKED}) == '{"status": "blocked"}'
    item = DriftItem("vm:a", "drift", "moved")         # a plan file's plain string
    assert item.status is DriftStatus.DRIFT and item.to_dict()["status"] == "drift"


def test_plans_and_drift_reports_list_statuses_in_the_same_order() -> None:
    items = tuple(DriftItem(f"vm:{s.value}", s, "x") for s in reversed(DriftStatus))
    heads = [line for line in drift_lines(items) if line.endswith(":")]
    assert heads == ["Blocked:", "Drift:", "Pending:", "Unmanaged (reported, never removed):"]
    assert list(drift.CLASS_ORDER) == list(DriftStatus)
    assert drift.OUT_OF_SYNC == {"blocked", "drift", "pending"}


def test_step_outcomes_and_what_the_journal_records() -> None:
    assert {o.value: o.journal_value for o in StepOutcome} == {
        "ok": "ok", "failed": "failed", "pending": "skipped", "not-started": "skipped",
            "stopped": "failed"}
    assert [o for o in StepOutcome if o.is_failure] == [StepOutcome.FAILED]
    assert f"{StepOutcome.NOT_STARTED}" == "not-started"


def test_the_apply_step_outcome_is_the_shared_one() -> None:
    from reconciler.apply.outcome import StepOutcome as ApplyStepOutcome
    assert ApplyStepOutcome is StepOutcome


def test_disruption_is_still_importable_from_plan_actions() -> None:
    assert actions.Disruption is Disruption
    assert Disruption.NONE < Disruption.VM_RESTART < Disruption.HOST_REBOOT
