"""JSON rendering of a plan: stable (sorted keys), `format_version` 1, schemas/plan.schema.json."""
from __future__ import annotations

import json

from reconciler.plan.result import Plan, plan_to_dict


def render_json(plan: Plan, include_observed: bool = False) -> str:
    return json.dumps(plan_to_dict(plan, include_observed), sort_keys=True, indent=2,
                      ensure_ascii=False) + "\n"
