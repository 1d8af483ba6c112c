"""VmChanges: what one concern (passthrough, vGPU, the restart policy) finds on one VM."""
from __future__ import annotations

from dataclasses import dataclass

from reconciler.plan.actions import Action


@dataclass(frozen=True)
class VmChanges:
    actions: tuple[Action, ...] = ()      # in the order they are planned
    differences: tuple[str, ...] = ()     # what differs or waits, for the VM's drift item
    blockers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()        # risks that exist already and that nothing here changes


NO_CHANGES = VmChanges()
