"""`EngineOps`: everything the executor asks of the engine, on one connection.

The changes are today's `engine_ops` functions with the connection, the retry/poll `Timing` and
the run's correlation id bound: each one reads first, sends one change, waits until it shows, and
raises the `engine_ops` errors (`MaintenanceBlocked`, `InstallFailed`, `ActivationFailed`,
`HostDidNotReturn`, ...) that the host cycle decides on. The reads are the `ObjectReader`'s: one
host or VM by name, a cluster's hosts for the budget, and verification by re-observing.

One `EngineOps` serves one thread (an SDK connection does); `OpenOps` gives a worker its own.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from reconciler.apply.engine_ops import Outcome
from reconciler.apply.verify import VerifyReport
from reconciler.model.facts import Host, Vm
from reconciler.plan.actions import Verification


class EngineOps(Protocol):
    # ---- reads ----------------------------------------------------------------------------

    def host(self, name: str) -> Host | None:
        """The host as the engine shows it now; None when there is no such host."""
        ...

    def vm(self, name: str) -> Vm | None:
        ...

    def cluster_hosts(self, cluster: str) -> list[Host]:
        """Every host of one cluster, statuses fresh (for the availability budget)."""
        ...

    def verify(self, checks: Sequence[Verification], timeout: float) -> VerifyReport:
        """Re-observe the checks' targets until they hold; `VerificationFailed` otherwise."""
        ...

    def request_counts(self) -> tuple[int, int]:
        """(requests, failed requests) sent on this connection so far."""
        ...

    # ---- host fields ----------------------------------------------------------------------

    def set_kernel_cmdline(self, host: str, cmdline: str,
                           owned: Sequence[str] | None = None) -> Outcome:
        ...

    def set_vgpu_placement(self, host: str, placement: str) -> Outcome:
        ...

    # ---- the host cycle -------------------------------------------------------------------

    def deactivate_host(self, host: str, timeout: float, *, reason: str | None = None
                        ) -> Outcome:
        ...

    def install_host(self, host: str, reboot: bool, activate: bool, timeout: float) -> Outcome:
        ...

    def activate_host(self, host: str, timeout: float) -> Outcome:
        ...

    # ---- VMs ------------------------------------------------------------------------------

    def pin_vm(self, vm: str, host: str) -> Outcome:
        ...

    def attach_host_device(self, vm: str, device_name: str) -> Outcome:
        ...

    def detach_host_device(self, vm: str, device_name: str) -> Outcome:
        ...

    def add_mediated_device(self, vm: str, mdev_type: str, nodisplay: bool,
                            driver_params: str | None, *, instances: int | None = None
                            ) -> Outcome:
        ...

    def remove_mediated_device(self, vm: str, mdev_id: str) -> Outcome:
        ...

    def update_mediated_device(self, vm: str, mdev_id: str, mdev_type: str, nodisplay: bool,
                               driver_params: str | None) -> Outcome:
        ...

    def add_vnc_console(self, vm: str) -> Outcome:
        ...

    def shutdown_vm(self, vm: str, timeout: float, *, stop_timeout: float) -> Outcome:
        ...

    def start_vm(self, vm: str, timeout: float) -> Outcome:
        ...


# Opens an `EngineOps` on a new connection for one worker thread, closed when the block ends
# (engine errors opening it are ReconcilerErrors).
OpenOps = Callable[[], AbstractContextManager[EngineOps]]


__all__ = ["EngineOps", "OpenOps"]
