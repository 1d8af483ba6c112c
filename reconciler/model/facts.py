"""Observed state: immutable facts about the fleet, built once per run.

No raw SDK objects live here. Names are the engine's: hosts and VMs by name, devices by their libvirt
nodedev name (`pci_0000_03_00_0`). Collections are tuples so that facts are hashable and safe to
share between threads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CpuVendor = Literal["intel", "amd", "ibm", "ibms390"]
ProbeStatus = Literal["ok", "unknown"]


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    cpu_type: str | None = None          # ServerCPUList name, e.g. "Secure AMD EPYC"
    architecture: str | None = None      # x86_64 | ppc64 | s390x


@dataclass(frozen=True)
class MdevType:
    name: str                            # nvidia-11
    available_instances: int
    human_readable_name: str | None = None   # GRID M60-0B
    description: str | None = None       # "num_heads=2, ..., max_instance=16"
    max_instances: int | None = None     # parsed from description when present


@dataclass(frozen=True)
class HostDevice:
    name: str                            # pci_0000_86_00_0
    capability: str = "pci"
    iommu_group: int | None = None
    driver: str | None = None
    vendor_id: str | None = None         # "10de" (no 0x)
    vendor_name: str | None = None
    product_id: str | None = None        # "13f2"
    product_name: str | None = None
    parent: str | None = None
    physical_function: str | None = None
    virtual_functions: int | None = None
    mdev_types: tuple[MdevType, ...] = ()
    vm: str | None = None                # name of the VM using it, when one is

    @property
    def pci_id(self) -> str | None:
        if self.vendor_id and self.product_id:
            return f"{self.vendor_id}:{self.product_id}"
        return None


@dataclass(frozen=True)
class Host:
    id: str
    name: str
    cluster: str
    status: str                          # HostStatus value: up, maintenance, ...
    cpu_vendor: CpuVendor | None = None  # derived as in shared/ovirt-api.md § 1.4
    cpu_vendor_note: str | None = None   # why the vendor is unknown or disputed
    cpu_type: str | None = None
    cpu_name: str | None = None
    custom_kernel_cmdline: str = ""      # engine-configured args (os.custom_kernel_cmdline)
    reported_kernel_cmdline: str | None = None   # booted (VDSM's /proc/cmdline)
    reinstallation_required: bool = False
    device_passthrough: bool = False
    vgpu_placement: str | None = None
    devices: tuple[HostDevice, ...] = ()
    comment: str = ""                    # the engine's free-text comment; holds our record of
                                         # the kernel args we wrote (model/ownership.py)

    def device(self, name: str) -> HostDevice | None:
        return next((d for d in self.devices if d.name == name), None)


@dataclass(frozen=True)
class VmHostDevice:
    name: str
    host: str | None = None
    placeholder: bool = False


@dataclass(frozen=True)
class MediatedDevice:
    id: str
    mdev_type: str
    nodisplay: bool = False
    driver_params: str | None = None


@dataclass(frozen=True)
class GraphicsConsole:
    id: str
    protocol: str                        # vnc | spice


@dataclass(frozen=True)
class Vm:
    id: str
    name: str
    cluster: str
    status: str                          # VmStatus value: up, down, ...
    host: str | None = None              # where it runs now
    pinned_hosts: tuple[str, ...] = ()   # placement_policy.hosts
    affinity: str | None = None          # migratable | user_migratable | pinned
    graphics: tuple[GraphicsConsole, ...] = ()
    host_devices: tuple[VmHostDevice, ...] = ()
    mediated_devices: tuple[MediatedDevice, ...] = ()
    legacy_mdev_property: str | None = None   # custom property mdev_type (pre-4.5 form)


# ---- host probe facts ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BootEntry:
    """A persisted boot entry (BLS snippet or grubby --info)."""

    id: str
    kernel: str | None
    options: str                         # the args line, variables ($kernelopts) expanded


@dataclass(frozen=True)
class ModprobeFile:
    path: str                            # /etc/modprobe.d/x.conf
    blacklist: tuple[str, ...] = ()      # module names, '-' normalised to '_'
    options: tuple[tuple[str, str], ...] = ()   # (module, "k=v k2=v2")
    install_false: tuple[str, ...] = ()  # "install nouveau /bin/false" style
    sha256: str | None = None


@dataclass(frozen=True)
class PciFunction:
    address: str                         # 0000:86:00.0
    class_code: str | None = None        # 0x030000
    vendor_id: str | None = None
    device_id: str | None = None
    driver: str | None = None
    iommu_group: int | None = None
    sriov_totalvfs: int | None = None
    sriov_numvfs: int | None = None
    physfn: str | None = None            # for a VF: its PF address
    current_vgpu_type: int | None = None # per-VF vGPU interface (vendor-specific VFIO)
    creatable_vgpu_types: tuple[str, ...] = ()
    # The name of `current_vgpu_type` ("NVIDIA L40S-2Q") when a creatable list on the host still
    # names it: a full board lists no type at all, so the name may stay unknown.
    current_vgpu_name: str | None = None


@dataclass(frozen=True)
class MdevParentType:
    parent: str                          # 0000:86:00.0
    name: str                            # type directory, e.g. nvidia-18
    human_name: str | None = None        # GRID M60-2Q
    description: str | None = None
    available_instances: int | None = None
    device_api: str | None = None


@dataclass(frozen=True)
class ActiveMdev:
    """A mediated device that exists on the host: a vGPU instance vdsm created at a VM's start,
    named with the VM's mediated-device id (docs/fleet-map.md, "the join")."""

    uuid: str
    parent: str                          # mdev parent: the physical GPU, or one of its SR-IOV VFs
    mdev_type: str                       # nvidia-18, as the mdev's `mdev_type` link names it


@dataclass(frozen=True)
class NvidiaVgpu:
    """One vGPU as `nvidia-smi vgpu -q` reports it (fields the host did not print stay None)."""

    gpu: str                             # physical GPU, sysfs spelling: 0000:05:00.0
    vm_name: str | None = None           # the QEMU -name: the VM's name on oVirt
    vm_uuid: str | None = None
    vgpu_name: str | None = None         # GRID M60-2Q
    vgpu_type: int | None = None         # the vendor's type number (18, 1148)
    mdev_uuid: str | None = None         # absent on vendor-specific VFIO hosts


@dataclass(frozen=True)
class NvidiaGpu:
    bus_id: str
    name: str
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_percent: int | None = None
    vgpus_active: int | None = None      # `Active vGPUs` of its `nvidia-smi vgpu -q` section

    @property
    def address(self) -> str:
        """`00000000:05:00.0` as sysfs spells it: `0000:05:00.0`."""
        return pci_address(self.bus_id)


@dataclass(frozen=True)
class NvidiaSmiSummary:
    driver_version: str | None = None
    gpus: tuple[NvidiaGpu, ...] = ()
    vgpus_active: int | None = None
    vgpus: tuple[NvidiaVgpu, ...] = ()


def pci_address(bus_id: str) -> str:
    """A PCI address as sysfs spells it: nvidia-smi prints an 8-digit domain in upper case."""
    head, sep, tail = bus_id.strip().lower().rpartition(":")
    domain, _, bus = head.rpartition(":")
    if not sep or not domain:
        return bus_id.strip().lower()
    return f"{domain[-4:].rjust(4, '0')}:{bus}:{tail}"


@dataclass(frozen=True)
class ProbeFacts:
    """What one host says about itself. status 'unknown' carries the reason; other fields empty."""

    host: str
    status: ProbeStatus = "ok"
    reason: str | None = None
    proc_cmdline: str | None = None
    boot_entries: tuple[BootEntry, ...] = ()
    etc_kernel_cmdline: str | None = None
    grub_cmdline_linux: str | None = None        # /etc/default/grub GRUB_CMDLINE_LINUX
    modprobe_files: tuple[ModprobeFile, ...] = ()
    initramfs_blacklist: tuple[str, ...] | None = None   # None: could not inspect
    loaded_modules: tuple[str, ...] = ()
    vgpu_manager_service: str | None = None      # active | inactive | failed | not-found ...
    pci_functions: tuple[PciFunction, ...] = ()
    mdev_types: tuple[MdevParentType, ...] = ()
    iommu_enabled: bool | None = None            # /sys/kernel/iommu_groups not empty
    nvidia_smi: NvidiaSmiSummary | None = None
    seconds: float = 0.0
    mdevs: tuple[ActiveMdev, ...] = ()           # vGPU instances that exist now
    cpu_vendor: CpuVendor | None = None          # from /proc/cpuinfo; None: not recognised
    cpu_vendor_id: str | None = None             # as the kernel prints it: GenuineIntel, ...
    cpu_model: str | None = None                 # `model name` (or `cpu` on POWER)
    nvidia_smi_note: str | None = None           # why nvidia_smi is None: not installed, failed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def physical_gpu(self, address: str) -> str:
        """The physical GPU a function belongs to: a VF's PF, else the function itself."""
        fn = next((f for f in self.pci_functions if f.address == address), None)
        return fn.physfn if fn is not None and fn.physfn else address

    def mdevs_by_gpu(self) -> dict[str, tuple[ActiveMdev, ...]]:
        """Active mdevs per physical GPU (an mdev on a VF counts for the VF's PF)."""
        out: dict[str, list[ActiveMdev]] = {}
        for m in self.mdevs:
            out.setdefault(self.physical_gpu(m.parent), []).append(m)
        return {gpu: tuple(ms) for gpu, ms in sorted(out.items())}


@dataclass(frozen=True)
class KernelArgView:
    """Three-way view of one managed kernel argument on one host."""

    key: str                             # e.g. intel_iommu
    desired: str | None                  # token wanted ("intel_iommu=on"), None: must be absent
    configured: str | None               # token in engine custom cmdline / persisted boot args
    booted: str | None                   # token in reported cmdline / /proc/cmdline

    @property
    def waiting_for_reboot(self) -> bool:
        return self.configured == self.desired and self.booted != self.desired


@dataclass(frozen=True)
class EngineIdentity:
    """Which engine answered: its URL, and the id the engine gives its own installation
    (`product_info.instance_id`, the `InstanceId` made with its database; a rebuilt engine at the
    same URL has another one, one restored from a backup keeps it)."""

    url: str
    instance_id: str | None = None
    version: str | None = None           # product_info.version.full_version

    def same_engine(self, other: EngineIdentity) -> bool:
        if self.instance_id and other.instance_id:
            return self.instance_id == other.instance_id
        return self.url.rstrip("/") == other.url.rstrip("/")

    def describe(self) -> str:
        return f"{self.url} (instance {self.instance_id or 'unknown'})"


@dataclass(frozen=True)
class ObserveStats:
    engine_requests: int = 0
    hosts_probed: int = 0
    probe_failures: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Observed:
    clusters: tuple[Cluster, ...] = ()
    hosts: tuple[Host, ...] = ()
    vms: tuple[Vm, ...] = ()
    probes: tuple[ProbeFacts, ...] = ()          # one per probed host
    stats: ObserveStats = field(default_factory=ObserveStats, compare=False)

    def host(self, name: str) -> Host | None:
        return next((h for h in self.hosts if h.name == name), None)

    def vm(self, name: str) -> Vm | None:
        return next((v for v in self.vms if v.name == name), None)

    def probe(self, host: str) -> ProbeFacts | None:
        return next((p for p in self.probes if p.host == host), None)
