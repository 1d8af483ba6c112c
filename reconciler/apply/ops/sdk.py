"""`EngineOps` over a real ovirtsdk4 connection: the `engine_ops` functions and an `ObjectReader`,
with the connection, the run's pacing and its correlation id bound once."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from reconciler.access.endpoint import close_quietly
from reconciler.apply import engine_ops
from reconciler.apply.engine_ops import Outcome
from reconciler.apply.verify import ObjectReader, VerifyReport, verify
from reconciler.engine.retry import Timing
from reconciler.model.facts import Host, Vm
from reconciler.plan.actions import Verification


class SdkEngineOps:
    """One connection's `EngineOps`. `reader` must read through the same connection."""

    def __init__(self, connection: Any, reader: ObjectReader, timing: Timing,
                 correlation_id: str | None = None, stop: threading.Event | None = None) -> None:
        self.connection = connection
        self.reader = reader
        self.timing = timing
        self.correlation_id = correlation_id
        self.stop = stop          # ends a wait for maintenance early (SIGTERM)

    def _kw(self) -> dict[str, Any]:
        return {"correlation_id": self.correlation_id, "timing": self.timing}

    # ---- reads ----------------------------------------------------------------------------

    def host(self, name: str) -> Host | None:
        return self.reader.host(name)

    def vm(self, name: str) -> Vm | None:
        return self.reader.vm(name)

    def cluster_hosts(self, cluster: str) -> list[Host]:
        return self.reader.cluster_hosts(cluster)

    def verify(self, checks: Sequence[Verification], timeout: float) -> VerifyReport:
        # A change usually shows within a poll or two: start re-reading at the run's own poll
        # pace, but never wait longer than half a second before the first re-read.
        interval = self.timing.poll if self.timing.poll.initial < 1 else 0.5
        return verify(self.reader, checks, timeout, interval)

    def request_counts(self) -> tuple[int, int]:
        return (getattr(self.connection, "request_count", 0),
                getattr(self.connection, "failed_count", 0))

    # ---- changes --------------------------------------------------------------------------

    def set_kernel_cmdline(self, host: str, cmdline: str,
                           owned: Sequence[str] | None = None) -> Outcome:
        return engine_ops.set_kernel_cmdline(self.connection, host, cmdline, owned=owned,
                                             **self._kw())

    def set_vgpu_placement(self, host: str, placement: str) -> Outcome:
        return engine_ops.set_vgpu_placement(self.connection, host, placement, **self._kw())

    def deactivate_host(self, host: str, timeout: float, *, reason: str | None = None
                        ) -> Outcome:
        return engine_ops.deactivate_host(self.connection, host, timeout, reason=reason,
                                          stop=self.stop, **self._kw())

    def install_host(self, host: str, reboot: bool, activate: bool, timeout: float) -> Outcome:
        return engine_ops.install_host(self.connection, host, reboot=reboot, activate=activate,
                                       timeout=timeout, **self._kw())

    def activate_host(self, host: str, timeout: float) -> Outcome:
        return engine_ops.activate_host(self.connection, host, timeout, **self._kw())

    def pin_vm(self, vm: str, host: str) -> Outcome:
        return engine_ops.pin_vm(self.connection, vm, host, **self._kw())

    def attach_host_device(self, vm: str, device_name: str) -> Outcome:
        return engine_ops.attach_host_device(self.connection, vm, device_name, **self._kw())

    def detach_host_device(self, vm: str, device_name: str) -> Outcome:
        return engine_ops.detach_host_device(self.connection, vm, device_name, **self._kw())

    def add_mediated_device(self, vm: str, mdev_type: str, nodisplay: bool,
                            driver_params: str | None, *, instances: int | None = None
                            ) -> Outcome:
        return engine_ops.add_mediated_device(self.connection, vm, mdev_type, nodisplay,
                                              driver_params, instances=instances, **self._kw())

    def remove_mediated_device(self, vm: str, mdev_id: str) -> Outcome:
        return engine_ops.remove_mediated_device(self.connection, vm, mdev_id, **self._kw())

    def update_mediated_device(self, vm: str, mdev_id: str, mdev_type: str, nodisplay: bool,
                               driver_params: str | None) -> Outcome:
        return engine_ops.update_mediated_device(self.connection, vm, mdev_id, mdev_type,
                                                 nodisplay, driver_params, **self._kw())

    def add_vnc_console(self, vm: str) -> Outcome:
        return engine_ops.add_vnc_console(self.connection, vm, **self._kw())

    def shutdown_vm(self, vm: str, timeout: float, *, stop_timeout: float) -> Outcome:
        return engine_ops.shutdown_vm(self.connection, vm, timeout, stop_timeout=stop_timeout,
                                      **self._kw())

    def start_vm(self, vm: str, timeout: float) -> Outcome:
        return engine_ops.start_vm(self.connection, vm, timeout, **self._kw())


def sdk_worker_ops(connect: Callable[[], Any], reader: ObjectReader, timing: Timing,
                   correlation_id: str | None = None, stop: threading.Event | None = None
                   ) -> Callable[[], AbstractContextManager[SdkEngineOps]]:
    """An `OpenOps`: each call opens a new connection (`connect()`), reads through it, and
    closes it (logging out) when the worker is done."""

    @contextmanager
    def open_ops() -> Iterator[SdkEngineOps]:
        connection = connect()
        try:
            yield SdkEngineOps(connection, reader.with_connection(connection), timing,
                               correlation_id, stop)
        finally:
            close_quietly(connection)

    return open_ops


__all__ = ["SdkEngineOps", "sdk_worker_ops"]
