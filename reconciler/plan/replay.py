"""A saved plan planned again: from the spec files it names, against the facts it recorded.

The planner is a pure function, so the same spec, facts and applied fingerprints give the same
actions. An action in the file that differs in anything apply decides by (its kind, target,
disruption, verifications, wave or step arguments) was edited after the plan was made, and the
file is refused. The fields for people only (`before`, `after`, `description`, `note`, `reason`)
are not compared: apply runs and shows the actions planned again, never the file's wording.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.model.facts import Observed
from reconciler.plan.actions import Action
from reconciler.plan.planner import plan
from reconciler.plan.result import Plan
from reconciler.spec.model import DesiredState

PEOPLE_ONLY = frozenset({"before", "after", "description", "note", "reason"})
MAX_SHOWN = 3


def replan(desired: DesiredState, facts: Observed, applied: Mapping[str, str]) -> Plan:
    return plan(desired, facts, dict(applied))


def _decisive(action: Action) -> dict[str, Any]:
    return {k: v for k, v in action.to_dict().items() if k not in PEOPLE_ONLY}


def edited_actions(saved: Plan, again: Plan) -> list[str]:
    """How the saved plan's actions differ from the ones planned again ([] when they do not)."""
    have = [_decisive(a) for a in saved.actions]
    want = [_decisive(a) for a in again.actions]
    problems = []
    for index, (h, w) in enumerate(zip(have, want)):
        if h != w:
            fields = sorted(k for k in set(h) | set(w) if h.get(k) != w.get(k))
            problems.append(f"action {index} ({h.get('kind')} {h.get('target')}): "
                            f"{', '.join(fields)} differ from what the spec gives")
    if len(have) > len(want):
        problems += [f"action {i} ({h.get('kind')} {h.get('target')}): not in what the spec "
                     "gives" for i, h in enumerate(have[len(want):], len(want))]
    elif len(want) > len(have):
        problems += [f"the spec gives {len(want) - len(have)} more action(s) than the file holds "
                     f"(first: {want[len(have)].get('kind')} {want[len(have)].get('target')})"]
    if len(problems) > MAX_SHOWN:
        problems = problems[:MAX_SHOWN] + [f"and {len(problems) - MAX_SHOWN} more"]
    return problems


__all__ = ["PEOPLE_ONLY", "edited_actions", "replan"]
