"""Fixtures for the lab engine tests: small fleets built from the fleet dataclasses, and a running
lab (TLS, time scaled down) with a real ovirtsdk4 connection."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import pytest

from reconciler_lab.fleet import (LabCluster, LabDevice, LabFleet, LabHost, LabMdev, LabMdevType,
                                  LabVm)
from reconciler_lab.server import LabServer

T4_TYPES = (
    LabMdevType("nvidia-222", "GRID T4-1B", 16,
                "num_heads=4, frl_config=45, framebuffer=1024M, max_resolution=5120x2880, max_instance=16"),
    LabMdevType("nvidia-230", "GRID T4-16Q", 1,
                "num_heads=4, frl_config=60, framebuffer=16384M, max_resolution=7680x4320, max_instance=1"),
    LabMdevType("nvidia-228", "GRID T4-8Q", 2,
                "num_heads=4, frl_config=60, framebuffer=8192M, max_resolution=7680x4320, max_instance=2"),
)


def gpu_devices() -> tuple[LabDevice, ...]:
    nv = dict(vendor_id="10de", vendor_name="NVIDIA Corporation")
    return (
        LabDevice("computer", capability="system"),
        LabDevice("pci_0000_00_00_0", iommu_group=0, driver=None, vendor_id="8086",
                  vendor_name="Intel Corporation", product_id="2020", product_name="Sky Lake-E DMI3 Registers",
                  parent="computer", pci_class="0x060000"),
        LabDevice("pci_0000_3b_00_0", iommu_group=30, driver="nvidia", product_id="1eb8",
                  product_name="TU104GL [Tesla T4]", parent="pci_0000_00_00_0",
                  pci_class="0x030200", mdev_types=T4_TYPES, **nv),
        LabDevice("pci_0000_3b_00_1", iommu_group=30, driver="snd_hda_intel", product_id="10f8",
                  product_name="TU104 HD Audio Controller", parent="pci_0000_00_00_0",
                  pci_class="0x040300", **nv),
        LabDevice("pci_0000_af_00_0", iommu_group=90, driver="nvidia", product_id="1eb8",
                  product_name="TU104GL [Tesla T4]", parent="pci_0000_00_00_0",
                  pci_class="0x030200", mdev_types=T4_TYPES, **nv),
        LabDevice("usb_usb1", capability="usb_device", parent="computer"),
    )


def small_fleet(**host_overrides: object) -> LabFleet:
    clusters = (LabCluster("Default", "Intel Cascadelake Server Family"),
                LabCluster("amd", "Secure AMD EPYC"))
    devs = gpu_devices()
    hosts = (
        LabHost("host1", "Default", "Intel Cascadelake Server Family",
                "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", devices=devs,
                custom_kernel_cmdline="intel_iommu=on", booted_custom_args="intel_iommu=on",
                **host_overrides),  # type: ignore[arg-type]
        LabHost("host2", "Default", "Intel Cascadelake Server Family",
                "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", devices=devs),
        LabHost("host3", "amd", "AMD EPYC-Rome", "AMD EPYC 7302 16-Core Processor",
                devices=devs),
    )
    vms = (
        LabVm("vm-pass", "Default", pinned_hosts=("host1",), affinity="pinned"),
        LabVm("vm-vgpu", "Default", mediated_devices=(LabMdev("nvidia-222"),)),
        LabVm("vm-web", "Default", status="up", host="host2"),
        LabVm("vm-pinned-up", "Default", status="up", host="host1", pinned_hosts=("host1",),
              affinity="pinned"),
    )
    return LabFleet("small", clusters, hosts, vms)


def connect(lab: LabServer, **kwargs: object) -> sdk.Connection:
    options: dict[str, object] = dict(url=lab.url, username=lab.username, password=lab.password,
                                      ca_file=str(lab.ca_file) if lab.ca_file else None)
    options.update(kwargs)
    return sdk.Connection(**options)  # type: ignore[arg-type]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    with LabServer(small_fleet(), tmp_path / "state", time_scale=0.005) as server:
        yield server


@pytest.fixture
def conn(lab: LabServer) -> Iterator[sdk.Connection]:
    c = connect(lab)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """`main()` points structlog at the captured stderr of its test; undo that afterwards, so a
    later test that logs never writes to a closed stream."""
    yield
    import structlog
    structlog.reset_defaults()
