"""Fixtures for the apply-operation tests: a small hand-built lab fleet, a lab engine started per
test (its own state folder), a CA-verified SDK connection, and fast retry/poll pacing."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import pytest

from reconciler.engine.client import CountingConnection
from tests.support.connections import lab_connections
from reconciler.engine.retry import DEFAULT_TIMING
from reconciler_lab.fleet import (LabCluster, LabDevice, LabFleet, LabHost, LabMdevType, LabVm)

API = "/ovirt-engine/api"
MUTATING = ("POST", "PUT", "DELETE")

# The production retry and poll policy, paced for a lab running at time_scale=0.01.
FAST = DEFAULT_TIMING.scaled(0.01)

_M60_TYPES = (
    LabMdevType("nvidia-18", "GRID M60-2Q", 4, "num_heads=4, frl_config=60, framebuffer=2048M, "
                "max_resolution=5120x2880, max_instance=4"),
    LabMdevType("nvidia-22", "GRID M60-8Q", 1, "num_heads=4, frl_config=60, framebuffer=8192M, "
                "max_resolution=5120x2880, max_instance=1"),
)


def _gpu_devices() -> tuple[LabDevice, ...]:
    nvidia = dict(vendor_id="10de", vendor_name="NVIDIA Corporation")
    return (
        # A passthrough GPU with its audio function in the same IOMMU group.
        LabDevice("pci_0000_03_00_0", iommu_group=20, driver="vfio-pci", product_id="1eb8",
                  product_name="TU104GL [Tesla T4]", pci_class="0x030200", **nvidia),
        LabDevice("pci_0000_03_00_1", iommu_group=20, driver="vfio-pci", product_id="10f8",
                  product_name="TU104 HD Audio Controller", pci_class="0x040300", **nvidia),
        # A vGPU-capable GPU.
        LabDevice("pci_0000_86_00_0", iommu_group=40, driver="nvidia", product_id="13f2",
                  product_name="GM204GL [Tesla M60]", pci_class="0x030000",
                  mdev_types=_M60_TYPES, **nvidia),
    )


def _host(name: str, status: str = "up", behaviour: str = "normal",
          modprobe: tuple[tuple[str, str], ...] = ()) -> LabHost:
    return LabHost(name=name, cluster="gpu", cpu_type="Intel Cascadelake Server Family",
                   cpu_name="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz", status=status,
                   custom_kernel_cmdline="intel_iommu=on", booted_custom_args="intel_iommu=on",
                   devices=_gpu_devices(), behaviour=behaviour, modprobe_files=modprobe)


FOREIGN_MODPROBE = (("blacklist-nouveau.conf", "blacklist nouveau\noptions nouveau modeset=0\n"),
                    ("kvm.conf", "options kvm ignore_msrs=1\n"))


def apply_fleet() -> LabFleet:
    return LabFleet(
        name="apply-ops",
        clusters=(LabCluster("gpu", "Intel Cascadelake Server Family"),),
        hosts=(
            _host("gpu-01", modprobe=FOREIGN_MODPROBE),
            _host("gpu-02"),
            _host("gpu-03", status="maintenance", behaviour="never-returns"),
            _host("gpu-04", status="maintenance", behaviour="install-fails"),
            _host("gpu-05", status="maintenance"),
            _host("gpu-06"),
        ),
        vms=(
            LabVm("web-01", "gpu", status="up", host="gpu-01"),
            LabVm("cad-01", "gpu", pinned_hosts=("gpu-01",), affinity="pinned"),
            LabVm("cad-02", "gpu", status="up", host="gpu-02", pinned_hosts=("gpu-02",),
                  affinity="pinned"),
            # Not pinned, but only the user may migrate it: the engine cannot move it away.
            LabVm("desk-01", "gpu", status="up", host="gpu-06", affinity="user_migratable"),
            LabVm("render-01", "gpu", graphics=("spice",)),
            LabVm("plain-01", "gpu"),
        ),
    )


def lab_server_module() -> Any:
    from reconciler_lab import server
    return server


@pytest.fixture
def start_lab(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """start_lab(**LabServer kwargs) -> a started lab on `apply_fleet()`, stopped afterwards."""
    server = lab_server_module()
    with ExitStack() as stack:
        count = 0

        def start(fleet: LabFleet | None = None, **kwargs: Any) -> Any:
            nonlocal count
            count += 1
            kwargs.setdefault("time_scale", 0.01)
            lab = server.LabServer(fleet or apply_fleet(), tmp_path / f"lab{count}", **kwargs)
            lab.start()
            stack.callback(lab.stop)
            return lab

        yield start


@pytest.fixture
def lab(start_lab: Callable[..., Any]) -> Any:
    return start_lab()


@pytest.fixture
def connect() -> Iterator[Callable[..., CountingConnection]]:
    """connect(lab) -> the product's SDK connection, verifying the lab's TLS certificate."""
    with lab_connections() as make:
        yield make


@pytest.fixture
def conn(lab: Any, connect: Callable[[Any], sdk.Connection]) -> sdk.Connection:
    return connect(lab)


class RequestMark:
    """Requests the lab logged after a point in the test."""

    def __init__(self, lab: Any) -> None:
        self.lab = lab
        self.start = len(lab.request_log)

    def records(self) -> list[Any]:
        return [r for r in list(self.lab.request_log)[self.start:] if r.path.startswith(API)]

    def mutating(self) -> list[Any]:
        return [r for r in self.records() if r.method in MUTATING]


@pytest.fixture
def mark(lab: Any) -> Callable[[], RequestMark]:
    return lambda: RequestMark(lab)


@pytest.fixture(autouse=True)
def _quiet_logging() -> Iterator[None]:
    yield
    import structlog
    structlog.reset_defaults()
