"""Former name of `reconciler.plan.planfile`, kept so that existing imports keep working."""
from reconciler.plan.planfile import (MAX_CHANGES_SHOWN, StaleObject, current_snapshot,
                                      diff_objects, load_plan, save_plan, stale_objects)

__all__ = ["MAX_CHANGES_SHOWN", "StaleObject", "current_snapshot", "diff_objects", "load_plan",
           "save_plan", "stale_objects"]
