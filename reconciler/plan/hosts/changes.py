"""HostChanges: what one concern (kernel command line, modprobe file, vGPU settings) finds on one
host. A host's plan combines them; nothing is written anywhere else."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from reconciler.plan.actions import Action, Reason, Verification


@dataclass(frozen=True)
class HostChanges:
    actions: tuple[Action, ...] = ()      # the host's settings, in the order they are planned
    differences: tuple[str, ...] = ()     # what differs, for the host's drift item
    needs_boot: tuple[str, ...] = ()      # why the host needs a cycle; empty: it does not
    blockers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()           # what could not be checked
    # What the host must show after its cycle (see HostCycle).
    expect_args: tuple[str, ...] = ()
    expect_absent: tuple[str, ...] = ()
    gone_tokens: tuple[str, ...] = ()     # booted tokens the cycle removes, as written
    modules_absent: tuple[str, ...] = ()
    cmdline_edit: bool = False            # the engine's custom cmdline changes
    kernel_unbooted: bool = False         # configured but not booted: the cycle only reboots


NO_CHANGES = HostChanges()
_FLAGS = tuple(f.name for f in dataclasses.fields(HostChanges) if isinstance(f.default, bool))
_LISTS = tuple(f.name for f in dataclasses.fields(HostChanges) if f.name not in _FLAGS)


def combine(*parts: HostChanges) -> HostChanges:
    """One host's changes from its concerns', in order: lists concatenated, flags or-ed."""
    found = [p for p in parts if p is not NO_CHANGES]
    if len(found) <= 1:
        return found[0] if found else NO_CHANGES
    merged: dict[str, object] = {name: any(getattr(p, name) for p in found) for name in _FLAGS}
    merged.update({name: sum((getattr(p, name) for p in found), ()) for name in _LISTS})
    return HostChanges(**merged)  # type: ignore[arg-type]


def one_setting(host_name: str, difference: str, action: type[Action], field: str,
                before: str | None, after: str, reason: Reason, description: str,
                **arguments: object) -> HostChanges:
    """One engine field of a host set to `after`, verified by reading `field` back."""
    key = f"host:{host_name}"
    check = Verification(key, field, "eq", after)
    setting = action(target=key, before=before, after=after, reason=reason,  # type: ignore[call-arg]
                     description=description, verify=(check,), **arguments)
    return HostChanges(differences=(difference,), actions=(setting,))
