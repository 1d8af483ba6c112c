"""The lab fleet's records: clusters, hosts with their devices and GPUs, VMs and their mdevs.

Plain frozen data, imported by every part of the lab (the catalogue that expands GPU models, the
simulated hosts, the engine); `fleet.py` reads and writes them as fleet files and generates big
fleets.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabMdevType:
    name: str                      # nvidia-18
    human_readable_name: str       # GRID M60-2Q
    max_instances: int
    description: str               # "num_heads=4, frl_config=60, framebuffer=2048M, ..., max_instance=4"


@dataclass(frozen=True)
class LabDevice:
    """One host device as the engine lists it (a libvirt nodedev)."""

    name: str                      # pci_0000_86_00_0
    capability: str = "pci"
    iommu_group: int | None = None
    driver: str | None = None
    vendor_id: str | None = None   # "10de"
    vendor_name: str | None = None
    product_id: str | None = None
    product_name: str | None = None
    parent: str | None = None      # parent nodedev name (pci bridge / root)
    pci_class: str | None = None   # "0x030200"
    physical_function: str | None = None
    virtual_functions: int | None = None
    mdev_types: tuple[LabMdevType, ...] = ()


@dataclass(frozen=True)
class LabGpu:
    """One physical GPU of a host as the fleet file names it: catalogue model, PCI address of
    function 0 and its IOMMU group (the hardware grouping, shown only while the IOMMU is on)."""

    model: str                     # catalogue key: tesla-m60, tesla-t4, a2, l40s, h100-pcie, ...
    address: str                   # 0000:86:00.0
    iommu_group: int


@dataclass(frozen=True)
class LabCluster:
    name: str
    cpu_type: str | None           # ServerCPUList name, e.g. "Intel Cascadelake Server Family"
    architecture: str = "x86_64"
    version: str = "4.7"


@dataclass(frozen=True)
class LabHost:
    name: str
    cluster: str
    cpu_type: str | None           # engine-computed best ServerCPUList entry
    cpu_name: str                  # /proc/cpuinfo model name
    status: str = "up"
    base_cmdline: str = "BOOT_IMAGE=(hd0,gpt2)/vmlinuz-5.14.0-427.13.1.el9_4.x86_64 root=/dev/mapper/rhel-root ro crashkernel=1G-4G:192M,4G-64G:256M,64G-:512M resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rd.lvm.lv=rhel/swap rhgb quiet"
    custom_kernel_cmdline: str = ""        # engine-configured
    booted_custom_args: str = ""           # custom args the host booted with (may differ: pending)
    vgpu_placement: str = "consolidated"
    os_release: str = "rhel9"
    devices: tuple[LabDevice, ...] = ()
    modules: tuple[str, ...] = ()          # modules loaded at boot besides the GPU driver logic
    services: tuple[tuple[str, str], ...] = ()   # (unit, state)
    modprobe_files: tuple[tuple[str, str], ...] = ()   # (file name in /etc/modprobe.d, content)
    behaviour: str = "normal"              # normal | never-returns | install-fails
    gpus: tuple[LabGpu, ...] = ()          # what `devices` was expanded from (empty: hand-built)
    reinstallation_required: bool = False  # engine flag: custom cmdline changed, not yet deployed


@dataclass(frozen=True)
class LabMdev:
    mdev_type: str
    nodisplay: bool = False
    driver_params: str | None = None


@dataclass(frozen=True)
class LabVm:
    name: str
    cluster: str
    status: str = "down"           # up | down
    host: str | None = None        # running on (status up)
    pinned_hosts: tuple[str, ...] = ()
    affinity: str = "migratable"
    graphics: tuple[str, ...] = ("vnc",)   # protocols: vnc, spice
    host_devices: tuple[str, ...] = ()     # device names explicitly attached
    mediated_devices: tuple[LabMdev, ...] = ()
    # VM custom properties as the engine stores them, e.g. (("mdev_type", "nvidia-18"),): the
    # pre-4.5 form of a vGPU that fleets upgraded from 4.3/4.4 carry (see reconciler_lab/legacy.py)
    custom_properties: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LabFleet:
    name: str
    clusters: tuple[LabCluster, ...] = ()
    hosts: tuple[LabHost, ...] = ()
    vms: tuple[LabVm, ...] = ()
    username: str = "admin@internal"
    password: str = "lab-password"
    engine_version: str = "4.5.6"
    extra: dict = field(default_factory=dict, compare=False)


# ---- fleet files --------------------------------------------------------------------------------
# The catalogue and host model build on the dataclasses above, hence the late imports.
