"""The planner: desired x observed -> an ordered, disruption-aware Plan (pure, no I/O)."""
from reconciler.plan.actions import Action, Disruption, Reason, Verification, action_from_dict
from reconciler.plan.planner import plan
from reconciler.plan.result import DriftItem, Note, Plan, Summary, Wave, plan_from_dict, plan_to_dict

__all__ = ["Action", "Disruption", "DriftItem", "Note", "Plan", "Reason", "Summary",
           "Verification", "Wave", "action_from_dict", "plan", "plan_from_dict", "plan_to_dict"]
