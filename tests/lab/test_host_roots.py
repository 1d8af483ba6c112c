"""Install with reboot goes through the simulated host root; untouched hosts get no tree."""
from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from reconciler_lab.server import LabServer
from tests.support.waiting import wait_for

from reconciler_lab import hosts as hosts_mod

pytestmark = pytest.mark.lab


def test_install_reboots_the_host_root(lab: LabServer, conn: sdk.Connection) -> None:
    hosts = conn.system_service().hosts_service()
    h = hosts.list(search="name=host2")[0]
    svc = hosts.host_service(h.id)
    assert not (lab.state_dir / "hosts").exists() or not any((lab.state_dir / "hosts").iterdir())
    svc.update(types.Host(os=types.OperatingSystem(custom_kernel_cmdline="intel_iommu=on iommu=pt")))
    svc.deactivate()
    wait_for(lambda: svc.get().status == types.HostStatus.MAINTENANCE)
    svc.install(reboot=True)
    wait_for(lambda: svc.get().status == types.HostStatus.MAINTENANCE
             and not svc.get().reinstallation_required)
    root = lab.host_root("host2")
    cmdline = hosts_mod.proc_cmdline(root).strip()
    assert "intel_iommu=on" in cmdline.split() and "iommu=pt" in cmdline.split()
    assert svc.get().os.reported_kernel_cmdline == cmdline
    assert "intel_iommu=on" in hosts_mod.persisted_args(root)
    assert svc.get().device_passthrough.enabled is True
    # Only the host that was installed has a tree.
    assert sorted(p.name for p in (lab.state_dir / "hosts").iterdir()) == ["host2"]
    # Removing an arg takes it out of the boot entries on the next install.
    svc.update(types.Host(os=types.OperatingSystem(custom_kernel_cmdline="intel_iommu=on")))
    svc.install(reboot=True)
    wait_for(lambda: svc.get().status == types.HostStatus.MAINTENANCE
             and not svc.get().reinstallation_required)
    assert "iommu=pt" not in hosts_mod.proc_cmdline(root).split()


def test_device_list_follows_the_boot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from reconciler_lab import fleet as fleet_mod
    from tests.lab.conftest import connect
    base = fleet_mod.LabHost("t4-host", "Default", "Intel Cascadelake Server Family", "Xeon",
                             gpus=(fleet_mod.LabGpu("tesla-t4", "0000:3b:00.0", 30),))
    host = fleet_mod.expand_host(base)
    fleet = fleet_mod.LabFleet("boot", (fleet_mod.LabCluster("Default", "Intel Cascadelake Server Family"),),
                               (host,), ())
    with LabServer(fleet, tmp_path / "s", time_scale=0.002) as lab, connect(lab) as conn:
        hosts = conn.system_service().hosts_service()
        h = hosts.list(follow="devices")[0]
        gpu = next(d for d in h.devices if d.name == "pci_0000_3b_00_0")
        assert gpu.iommu_group is None and h.device_passthrough.enabled is False
        svc = hosts.host_service(h.id)
        svc.update(types.Host(os=types.OperatingSystem(custom_kernel_cmdline="intel_iommu=on")))
        svc.deactivate()
        wait_for(lambda: svc.get().status == types.HostStatus.MAINTENANCE)
        svc.install(reboot=True, activate=True)
        wait_for(lambda: svc.get().status == types.HostStatus.UP)
        h = hosts.list(follow="devices")[0]
        gpu = next(d for d in h.devices if d.name == "pci_0000_3b_00_0")
        assert gpu.iommu_group == 30 and h.device_passthrough.enabled is True


def test_materialised_root_is_what_the_engine_reports(lab: LabServer, conn: sdk.Connection) -> None:
    root = lab.host_root("host1")
    assert lab.host_root("host1") == root                      # idempotent
    h = conn.system_service().hosts_service().list(search="name=host1")[0]
    assert h.os.reported_kernel_cmdline == hosts_mod.proc_cmdline(root).strip()
    with pytest.raises(Exception, match="no host named 'nope'"):
        lab.host_root("nope")
