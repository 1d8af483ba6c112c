"""The planner: desired x observed -> an ordered, disruption-aware Plan.

`plan()` is pure: no I/O, no clock, the same inputs give the same plan. The one module here that
touches files is `planfile.py` (saving and loading plans); the renderers only build strings
(`render_text.use_color` reads NO_COLOR from the environment unless it is given one).
"""
from reconciler.plan.actions import Action, Disruption, Reason, Verification, action_from_dict
from reconciler.plan.planner import plan
from reconciler.plan.result import DriftItem, Note, Plan, Summary, Wave, plan_from_dict, plan_to_dict

__all__ = ["Action", "Disruption", "DriftItem", "Note", "Plan", "Reason", "Summary",
           "Verification", "Wave", "action_from_dict", "plan", "plan_from_dict", "plan_to_dict"]
