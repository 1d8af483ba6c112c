"""The VM phase (see phase.py): passthrough, vGPUs, the restart policy and vGPU seats."""
from reconciler.plan.vms.phase import VmPhase, plan_vms

__all__ = ["VmPhase", "plan_vms"]
