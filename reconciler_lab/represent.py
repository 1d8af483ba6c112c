"""SDK objects for the lab's entities carrying what the engine always sends.

The engine's mappers (restapi/types HostMapper, VmMapper, ClusterMapper, ...) fill many members on
every read whether a client asked for them or not, and public clients rely on them being there: the
`ovirt.ovirt` collection reads `host.power_management.kdump_detection`, `host.spm.priority` and
`vm.cpu.mode` unguarded. Values the lab does not simulate are the engine's defaults for a fresh
entity (power management off, SPM priority 5, ...), fixed so that repeated reads agree.
References to collections the lab does not serve (cpu profiles, quotas, MAC pools, scheduling
policies) are left out rather than advertised dead. Who changes what is in engine.py; this module only builds objects.
"""
from __future__ import annotations

import datetime as dt
import zlib

from ovirtsdk4 import types

API = "/ovirt-engine/api"

BLANK_TEMPLATE_ID = "00000000-0000-0000-0000-000000000000"
# Entities the lab has exactly one of, each with a fixed id so that links stay stable.
DATA_CENTER_ID = "5849b030-626e-47cb-ad90-3ce782d831b3"
DATA_CENTER_NAME = "Default"
# When the seed VMs were created (the lab's fleets have no history).
CREATION_TIME = dt.datetime(2024, 1, 15, 9, 30, 0, 125000, tzinfo=dt.timezone.utc)

VM_MEMORY = 4 * 2**30
HOST_MEMORY = 512 * 2**30
VDSM_VERSION = (4, 50, 5, 1, "vdsm-4.50.5.1-1.el9")
LIBVIRT_VERSION = (10, 0, 0, 6, "libvirt-10.0.0-6.el9")


def ref(obj: types.Struct, href: str) -> types.Struct:
    obj.href = href  # type: ignore[attr-defined]
    return obj


def _version(parts: tuple[int, int, int, int, str]) -> types.Version:
    major, minor, build, revision, full = parts
    return types.Version(major=major, minor=minor, build=build, revision=revision,
                         full_version=full)


def cluster_version(text: str) -> types.Version:
    major, _, minor = text.partition(".")
    return types.Version(major=int(major), minor=int(minor or 0))


def host_extras(host: types.Host, *, address: str, port: int = 54321, active_vms: int = 0,
                migrating_vms: int = 0, total_vms: int = 0, os_version: str = "9") -> None:
    """Members every host read carries (HostMapper): hardware, VDSM/libvirt, SPM, PM, KSM, ..."""
    host.address = address
    host.comment = host.comment if host.comment is not None else ""
    host.auto_numa_status = types.AutoNumaStatus.UNKNOWN
    host.certificate = types.Certificate(organization="lab.example",
                                         subject=f"O=lab.example,CN={address}")
    host.external_status = types.ExternalStatus.OK
    host.hardware_information = types.HardwareInformation(
        family="PowerEdge", manufacturer="Dell Inc.", product_name="PowerEdge R740",
        serial_number=f"LAB{zlib.crc32(address.encode()) % 10**7:07d}", uuid=None, version="")
    host.kdump_status = types.KdumpStatus.DISABLED
    host.ksm = types.Ksm(enabled=False)
    host.libvirt_version = _version(LIBVIRT_VERSION)
    host.max_scheduling_memory = HOST_MEMORY - 8 * 2**30
    host.memory = HOST_MEMORY
    host.network_operation_in_progress = False
    host.numa_supported = True
    host.port = port
    host.power_management = types.PowerManagement(
        automatic_pm_enabled=True, enabled=False, kdump_detection=True, pm_proxies=[])
    host.protocol = types.HostProtocol.STOMP
    host.se_linux = types.SeLinux(mode=types.SeLinuxMode.ENFORCING)
    host.spm = types.Spm(priority=5, status=types.SpmStatus.NONE)
    host.ssh = types.Ssh(fingerprint="SHA256:labLabLabLabLabLabLabLabLabLabLabLabLabLabLa",
                         port=22)
    host.summary = types.VmSummary(active=active_vms, migrating=migrating_vms, total=total_vms)
    host.transparent_huge_pages = types.TransparentHugePages(enabled=True)
    host.update_available = False
    host.version = _version(VDSM_VERSION)
    if host.os is not None:
        host.os.version = types.Version(full_version=os_version, major=int(os_version))


def vm_extras(vm: types.Vm, *, running: bool, architecture: str) -> None:
    """Members every VM read carries (VmMapper/VmBaseMapper) for a VM made from Blank."""
    vm.bios = types.Bios(boot_menu=types.BootMenu(enabled=False), type=types.BiosType.Q35_OVMF)
    vm.console = types.Console(enabled=False)
    vm.cpu = types.Cpu(architecture=types.Architecture(architecture),
                       topology=types.CpuTopology(cores=1, sockets=2, threads=1))
    vm.cpu_pinning_policy = types.CpuPinningPolicy.NONE
    vm.cpu_shares = 0
    vm.creation_time = CREATION_TIME
    vm.delete_protected = False
    vm.high_availability = types.HighAvailability(enabled=False, priority=0)
    vm.io = types.Io(threads=1)
    vm.memory = VM_MEMORY
    vm.memory_policy = types.MemoryPolicy(guaranteed=VM_MEMORY, max=4 * VM_MEMORY,
                                          ballooning=True)
    vm.migration = types.MigrationOptions(auto_converge=types.InheritableBoolean.INHERIT,
                                          compressed=types.InheritableBoolean.INHERIT,
                                          encrypted=types.InheritableBoolean.INHERIT)
    vm.migration_downtime = -1
    vm.multi_queues_enabled = True
    vm.origin = "ovirt"
    vm.os = types.OperatingSystem(boot=types.Boot(devices=[types.BootDevice.HD]), type="rhel_9x64")
    vm.sso = types.Sso(methods=[types.Method(id=types.SsoMethod.GUEST_AGENT)])
    vm.start_paused = False
    vm.stateless = False
    vm.storage_error_resume_behaviour = types.VmStorageErrorResumeBehaviour.AUTO_RESUME
    vm.time_zone = types.TimeZone(name="Etc/GMT")
    vm.tpm_enabled = False
    vm.type = types.VmType.SERVER
    vm.usb = types.Usb(enabled=False)
    vm.virtio_scsi_multi_queues_enabled = False
    vm.soundcard_enabled = False
    vm.has_illegal_images = False
    vm.next_run_configuration_exists = False
    vm.numa_tune_mode = types.NumaTuneMode.INTERLEAVE
    vm.run_once = False
    vm.template = ref(types.Template(id=BLANK_TEMPLATE_ID), f"{API}/templates/{BLANK_TEMPLATE_ID}")
    vm.original_template = ref(types.Template(id=BLANK_TEMPLATE_ID),
                               f"{API}/templates/{BLANK_TEMPLATE_ID}")
    if running:
        vm.start_time = CREATION_TIME
    else:
        vm.stop_time = CREATION_TIME
        vm.stop_reason = ""


def cluster_extras(cluster: types.Cluster, cluster_id: str) -> None:
    """Members every cluster read carries (ClusterMapper) for a virt-only cluster."""
    cluster.comment = ""
    cluster.description = ""
    cluster.ballooning_enabled = True
    cluster.bios_type = types.BiosType.Q35_OVMF
    cluster.error_handling = types.ErrorHandling(on_error=types.MigrateOnError.MIGRATE)
    cluster.fips_mode = types.FipsMode.DISABLED
    cluster.firewall_type = types.FirewallType.FIREWALLD
    cluster.gluster_service = False
    cluster.ha_reservation = False
    cluster.ksm = types.Ksm(enabled=True, merge_across_nodes=True)
    cluster.log_max_memory_used_threshold = 95
    cluster.log_max_memory_used_threshold_type = types.LogMaxMemoryUsedThresholdType.PERCENTAGE
    cluster.maintenance_reason_required = False
    cluster.memory_policy = types.MemoryPolicy(
        over_commit=types.MemoryOverCommit(percent=100),
        transparent_huge_pages=types.TransparentHugePages(enabled=True))
    cluster.migration = types.MigrationOptions(
        auto_converge=types.InheritableBoolean.INHERIT, bandwidth=types.MigrationBandwidth(
            assignment_method=types.MigrationBandwidthAssignmentMethod.AUTO),
        compressed=types.InheritableBoolean.INHERIT, encrypted=types.InheritableBoolean.INHERIT)
    cluster.optional_reason = False
    cluster.required_rng_sources = [types.RngSource.URANDOM]
    cluster.switch_type = types.SwitchType.LEGACY
    cluster.threads_as_cores = False
    cluster.trusted_service = False
    cluster.tunnel_migration = False
    cluster.upgrade_in_progress = False
    cluster.virt_service = True
    cluster.vnc_encryption = False
    cluster.data_center = ref(types.DataCenter(id=DATA_CENTER_ID),
                              f"{API}/datacenters/{DATA_CENTER_ID}")


def data_center(version: types.Version, supported: list[types.Version]) -> types.DataCenter:
    obj = types.DataCenter(
        id=DATA_CENTER_ID, name=DATA_CENTER_NAME, description="The default Data Center",
        comment="", local=False, quota_mode=types.QuotaModeType.DISABLED,
        status=types.DataCenterStatus.UP, storage_format=types.StorageFormat.V5,
        supported_versions=supported, version=version)
    return ref(obj, f"{API}/datacenters/{DATA_CENTER_ID}")  # type: ignore[return-value]


def blank_template(cluster_version_: types.Version) -> types.Template:
    obj = types.Template(
        id=BLANK_TEMPLATE_ID, name="Blank", description="Blank template", comment="",
        creation_time=dt.datetime(2008, 4, 1, 0, 0, tzinfo=dt.timezone.utc),
        status=types.TemplateStatus.OK, type=types.VmType.SERVER,
        version=types.TemplateVersion(version_name="base version", version_number=1),
        memory=2**30, os=types.OperatingSystem(type="other"),
        cpu=types.Cpu(architecture=types.Architecture.UNDEFINED,
                      topology=types.CpuTopology(cores=1, sockets=1, threads=1)),
        custom_compatibility_version=None, delete_protected=False, stateless=False)
    return ref(obj, f"{API}/templates/{BLANK_TEMPLATE_ID}")  # type: ignore[return-value]


__all__ = ["API", "BLANK_TEMPLATE_ID", "CREATION_TIME", "DATA_CENTER_ID", "DATA_CENTER_NAME",
           "blank_template", "cluster_extras", "cluster_version", "data_center", "host_extras",
           "ref", "vm_extras"]
