"""The host phase (see phase.py): one module per concern of a managed host, then the cycles."""
from reconciler.plan.hosts.phase import HostPhase, plan_hosts

__all__ = ["HostPhase", "plan_hosts"]
