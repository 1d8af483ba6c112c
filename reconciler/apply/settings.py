"""The small frozen values an `Executor` is built from, so that its constructor names concerns
(how to reach the fleet, what the run may do, how long waits may take) instead of a dozen knobs."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from reconciler.access.transport import Transport
from reconciler.apply.ops.protocol import EngineOps, OpenOps
from reconciler.plan.actions import Action, Disruption


@dataclass(frozen=True)
class Timeouts:
    """Seconds each kind of wait may take before the step fails."""

    deactivate: float = 600.0
    install: float = 1800.0        # reinstall plus reboot
    activate: float = 600.0
    vm_shutdown: float = 300.0     # graceful shutdown, then a forced stop
    vm_stop: float = 120.0
    vm_start: float = 300.0
    verify: float = 60.0
    probe: float = 60.0

    @classmethod
    def for_hosts(cls, host_timeout: float, vm_timeout: float | None = None) -> Timeouts:
        vm = vm_timeout if vm_timeout is not None else cls.vm_shutdown
        return cls(deactivate=host_timeout, install=host_timeout, activate=host_timeout,
                   vm_shutdown=vm, vm_stop=vm, vm_start=vm)


# What `restart_policy` answers for a VM that no spec names: it is never stopped.
NOT_IN_SPEC = "not-in-spec"


def _no_restart_policy(_vm: str) -> str | None:
    return None


def _no_vgpu_manager(_host: str) -> bool:
    return False


@dataclass(frozen=True)
class ApplyPolicy:
    """What this run may do, from the command line and the spec.

    `restart_policy(vm)` is the spec's `restart` for a VM (None: not checked; NOT_IN_SPEC: no
    spec names the VM), asked again before
    every stop, because a saved plan may have been edited; `vgpu_required(host)` adds the vGPU
    manager checks to a host's cycle verification.
    """

    max_disruption: Disruption = Disruption.HOST_REBOOT
    restart_policy: Callable[[str], str | None] = _no_restart_policy
    vgpu_required: Callable[[str], bool] = _no_vgpu_manager

    def allows(self, action: Action) -> bool:
        return action.disruption <= self.max_disruption

    def pending_reason(self, action: Action) -> str:
        return (f"pending: {action.disruption.value} is above --max-disruption "
                f"{self.max_disruption.value}")


@dataclass(frozen=True)
class FleetAccess:
    """How the executor reaches the fleet.

    `ops` serves the thread that calls `Executor.run`. With `open_ops`, the host cycles of one
    wave run side by side (up to `max_parallel`), each on `EngineOps` of its own, because an SDK
    connection serves one thread; without it they run one after another on `ops`. `transports`
    reach the hosts' files by host name (empty: no host access).
    """

    ops: EngineOps
    transports: Mapping[str, Transport] = field(default_factory=dict)
    open_ops: OpenOps | None = None
    max_parallel: int = 8


__all__ = ["ApplyPolicy", "FleetAccess", "Timeouts"]
