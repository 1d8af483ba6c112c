"""A host's vGPU side: the engine's placement setting, and whether the host can serve vGPUs at all
(the vGPU manager the profile asks for, GPUs the engine can drive)."""
from __future__ import annotations

from reconciler.model.facts import Host, ProbeFacts
from reconciler.plan import checks
from reconciler.plan.actions import Reason, SetVgpuPlacement
from reconciler.plan.expand import HostDesired
from reconciler.plan.hosts.changes import NO_CHANGES, HostChanges, one_setting


def placement_change(host: Host, desired: HostDesired, reason: Reason) -> HostChanges:
    want = desired.vgpu_placement
    if want is None or want == host.vgpu_placement:
        return NO_CHANGES
    return one_setting(host.name, f"vGPU placement {host.vgpu_placement} -> {want}",
                       SetVgpuPlacement, "vgpu_placement", host.vgpu_placement, want, reason,
                       f"set vGPU placement to {want}", placement=want)


def vgpu_readiness(host: Host, desired: HostDesired, probe: ProbeFacts | None,
                   vgpu_in_cluster: bool) -> HostChanges:
    """Blockers and notes about the vGPU manager and the GPUs' vGPU interface."""
    blockers: list[str] = []
    blocker, note = checks.vgpu_manager_problem(desired.vgpu_manager, probe)
    if blocker:
        blockers.append(f"host {host.name}: {blocker}")
    # Only where vGPUs matter: a profile manages them here, or a spec VM of the cluster has one.
    if desired.vgpu_manager != "ignore" or desired.vgpu_placement is not None or vgpu_in_cluster:
        vfs = checks.per_vf_interface(probe)
        if vfs:
            blockers.append(
                f"host {host.name}: GPU functions {', '.join(vfs)} use the per-VF vGPU "
                "interface (creatable_vgpu_types, no mdev bus), which the engine cannot drive; "
                "their vGPUs cannot be managed here")
    if not (blockers or note):
        return NO_CHANGES
    return HostChanges(blockers=tuple(blockers), notes=(note,) if note else ())
