"""GPU models and platform devices the lab knows: real PCI ids, functions and vGPU types.

Sources are the team notes in shared/host-facts.md (§§ 3-5). Type numbers and names are only the
ones those notes give; where a value there is marked unconfirmed or a filler, the entry says so.
Non-GPU platform devices (host bridge, root ports, SATA, NIC) use their pci.ids names; they exist so
that a host's device list looks like a real one, and nothing depends on their exact ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reconciler_lab.records import LabMdevType

NVIDIA = "10de"
NVIDIA_NAME = "NVIDIA Corporation"

# mdev: vGPU types on the physical function (M60, T4).
# mdev-vf: SR-IOV VFs are the mdev parents, one vGPU per VF (Ampere on older vGPU branches).
# vendor-vfio: VFs carry nvidia/creatable_vgpu_types + current_vgpu_type; no mdev (Ada, new branches).
# passthrough: whole-GPU assignment only.
Backend = Literal["mdev", "mdev-vf", "vendor-vfio", "passthrough"]


@dataclass(frozen=True)
class VgpuType:
    """A vendor-VFIO vGPU type as `creatable_vgpu_types` lists it: `1148  : NVIDIA L40S-2Q`."""

    id: int
    name: str
    max_instances: int


@dataclass(frozen=True)
class GpuModel:
    key: str                          # catalogue name used in fleet files: tesla-m60
    product_id: str                   # 13f2
    product_name: str                 # pci.ids device name: GM204GL [Tesla M60]
    smi_name: str                     # nvidia-smi "Product Name"
    pci_class: str                    # sysfs class: 0x030000 (VGA) or 0x030200 (3D)
    subsystem_device: str             # filler unless noted
    memory_mib: int                   # per physical GPU, for nvidia-smi
    backend: Backend
    gpus_per_board: int = 1
    mdev_types: tuple[LabMdevType, ...] = ()
    vgpu_types: tuple[VgpuType, ...] = ()
    sriov_totalvfs: int = 0           # what the PF advertises
    sriov_vfs: int = 0                # VFs enabled once the NVIDIA driver is up
    audio_product_id: str | None = None    # HDMI audio function .1 in the same IOMMU group
    audio_product_name: str | None = None
    vgpu_driver: bool = True          # the vGPU manager's nvidia module binds this GPU

    @property
    def vendor_id(self) -> str:
        return NVIDIA

    @property
    def pci_id(self) -> str:
        return f"{NVIDIA}:{self.product_id}"


def _mdev(number: int, name: str, num_heads: int, frl: int, framebuffer_m: int,
          max_resolution: str, max_instance: int) -> LabMdevType:
    description = (f"num_heads={num_heads}, frl_config={frl}, framebuffer={framebuffer_m}M, "
                   f"max_resolution={max_resolution}, max_instance={max_instance}")
    return LabMdevType(name=f"nvidia-{number}", human_readable_name=name,
                       max_instances=max_instance, description=description)


# Tesla M60: names, framebuffer and max_instance per type are captured output (host-facts § 4.2).
# The description strings of nvidia-11 and nvidia-18 are captured verbatim; the others follow the
# stated pattern (A types: 1 head at 1280x1024; B types: frl_config=45), and their num_heads /
# max_resolution values are that pattern, not captures.
_M60_TYPES = (
    _mdev(11, "GRID M60-0B", 2, 45, 512, "2560x1600", 16),
    _mdev(12, "GRID M60-0Q", 2, 60, 512, "2560x1600", 16),
    _mdev(13, "GRID M60-1A", 1, 60, 1024, "1280x1024", 8),
    _mdev(14, "GRID M60-1B", 4, 45, 1024, "2560x1600", 8),
    _mdev(15, "GRID M60-1Q", 4, 60, 1024, "5120x2880", 8),
    _mdev(16, "GRID M60-2A", 1, 60, 2048, "1280x1024", 4),
    _mdev(17, "GRID M60-2B", 4, 45, 2048, "2560x1600", 4),
    _mdev(18, "GRID M60-2Q", 4, 60, 2048, "5120x2880", 4),
    _mdev(19, "GRID M60-4A", 1, 60, 4096, "1280x1024", 2),
    _mdev(20, "GRID M60-4Q", 4, 60, 4096, "5120x2880", 2),
    _mdev(21, "GRID M60-8A", 1, 60, 8192, "1280x1024", 1),
    _mdev(22, "GRID M60-8Q", 4, 60, 8192, "5120x2880", 1),
    _mdev(210, "GRID M60-2B4", 4, 45, 2048, "2560x1600", 4),
    _mdev(238, "GRID M60-1B4", 4, 45, 1024, "2560x1600", 8),
)

# Tesla T4: only the type numbers host-facts gives (nvidia-222/223/231/234, third-party sources).
# nvidia-222's description is a quoted capture; the other three descriptions are derived from the
# framebuffer size (16 GB / size) and the Q/B pattern, not captured.
_T4_TYPES = (
    _mdev(222, "GRID T4-1B", 4, 45, 1024, "5120x2880", 16),
    _mdev(223, "GRID T4-2B", 4, 45, 2048, "5120x2880", 8),
    _mdev(231, "GRID T4-2Q", 4, 60, 2048, "7680x4320", 8),
    _mdev(234, "GRID T4-16Q", 4, 60, 16384, "7680x4320", 1),
)

# A2 on the mdev-on-VF backend: nvidia-745 / nvidia-746 with 8 / 4 instances are third-party
# (openshift-virtualization-tests); description fields other than framebuffer/max_instance are
# derived, not captured.
_A2_TYPES = (
    _mdev(745, "NVIDIA A2-2Q", 4, 60, 2048, "7680x4320", 8),
    _mdev(746, "NVIDIA A2-4Q", 4, 60, 4096, "7680x4320", 4),
)

# L40S (vendor VFIO): ids and names from a captured creatable_vgpu_types list; max instances are
# 48 GB / framebuffer (derived). The A/C profiles after 1157 are not listed in the notes.
_L40S_SIZES = (("1B", 1), ("2B", 2), ("1Q", 1), ("2Q", 2), ("3Q", 3), ("4Q", 4), ("6Q", 6),
               ("8Q", 8), ("12Q", 12), ("16Q", 16), ("24Q", 24), ("48Q", 48), ("1A", 1))
_L40S_TYPES = tuple(VgpuType(id=1145 + i, name=f"NVIDIA L40S-{suffix}", max_instances=48 // gb)
                    for i, (suffix, gb) in enumerate(_L40S_SIZES))

MODELS: dict[str, GpuModel] = {m.key: m for m in (
    GpuModel(key="tesla-m60", product_id="13f2", product_name="GM204GL [Tesla M60]",
             smi_name="Tesla M60", pci_class="0x030000", subsystem_device="0x113a",
             memory_mib=8192, backend="mdev", gpus_per_board=2, mdev_types=_M60_TYPES),
    # T4 advertises 16 VFs but the driver uses mdev on the PF (gpu-operator PR #2502).
    GpuModel(key="tesla-t4", product_id="1eb8", product_name="TU104GL [Tesla T4]",
             smi_name="Tesla T4", pci_class="0x030200", subsystem_device="0x12a2",
             memory_mib=15360, backend="mdev", mdev_types=_T4_TYPES, sriov_totalvfs=16),
    # VF count 16 is a filler (not in the notes); max instances per type bound the board.
    GpuModel(key="a2", product_id="25b6", product_name="GA107GL [A2 / A16]",
             smi_name="NVIDIA A2", pci_class="0x030200", subsystem_device="0x157e",
             memory_mib=15356, backend="mdev-vf", mdev_types=_A2_TYPES, sriov_totalvfs=16,
             sriov_vfs=16),
    # 32 VFs as in the captured L40S snapshot (values marked as fillers there).
    GpuModel(key="l40s", product_id="26b9", product_name="AD102GL [L40S]",
             smi_name="NVIDIA L40S", pci_class="0x030200", subsystem_device="0x1851",
             memory_mib=46068, backend="vendor-vfio", vgpu_types=_L40S_TYPES,
             sriov_totalvfs=32, sriov_vfs=32),
    GpuModel(key="h100-pcie", product_id="2331", product_name="GH100 [H100 PCIe]",
             smi_name="NVIDIA H100 PCIe", pci_class="0x030200", subsystem_device="0x1626",
             memory_mib=81559, backend="passthrough"),
    # The Quadro's HDMI audio function shares its IOMMU group (the classic passthrough example).
    GpuModel(key="quadro-k4200", product_id="11b4", product_name="GK104GL [Quadro K4200]",
             smi_name="Quadro K4200", pci_class="0x030000", subsystem_device="0x1096",
             memory_mib=4096, backend="passthrough", audio_product_id="0e0a",
             audio_product_name="GK104 HDMI Audio Controller", vgpu_driver=False),
)}

AUDIO_CLASS = "0x040300"


def model(key: str) -> GpuModel:
    """The catalogue entry for `key`; KeyError names the known keys."""
    try:
        return MODELS[key]
    except KeyError:
        raise KeyError(f"unknown GPU model {key!r} (known: {', '.join(sorted(MODELS))})") from None


def model_by_pci_id(vendor_id: str, product_id: str) -> GpuModel | None:
    if vendor_id != NVIDIA:
        return None
    return next((m for m in MODELS.values() if m.product_id == product_id), None)


@dataclass(frozen=True)
class PlatformDevice:
    """A non-GPU PCI function every host of a CPU vendor shows."""

    vendor_id: str
    vendor_name: str
    product_id: str
    product_name: str
    pci_class: str
    driver: str


INTEL_NAME = "Intel Corporation"
AMD_NAME = "Advanced Micro Devices, Inc. [AMD]"

# role -> device, per CPU vendor. Addresses are chosen by the fleet expansion.
PLATFORM: dict[str, dict[str, PlatformDevice]] = {
    "intel": {
        "host_bridge": PlatformDevice("8086", INTEL_NAME, "2020", "Sky Lake-E DMI3 Registers",
                                      "0x060000", ""),
        "root_port": PlatformDevice("8086", INTEL_NAME, "2030",
                                    "Sky Lake-E PCI Express Root Port A", "0x060400", "pcieport"),
        "sata": PlatformDevice("8086", INTEL_NAME, "a182",
                               "C620 Series Chipset Family SATA Controller [AHCI mode]",
                               "0x010601", "ahci"),
        "nic": PlatformDevice("8086", INTEL_NAME, "1572",
                              "Ethernet Controller X710 for 10GbE SFP+", "0x020000", "i40e"),
    },
    "amd": {
        "host_bridge": PlatformDevice("1022", AMD_NAME, "1480", "Starship/Matisse Root Complex",
                                      "0x060000", ""),
        "root_port": PlatformDevice("1022", AMD_NAME, "1483", "Starship/Matisse GPP Bridge",
                                    "0x060400", "pcieport"),
        "sata": PlatformDevice("1022", AMD_NAME, "7901", "FCH SATA Controller [AHCI mode]",
                               "0x010601", "ahci"),
        "nic": PlatformDevice("14e4", "Broadcom Inc. and subsidiaries", "16d7",
                              "BCM57414 NetXtreme-E 10Gb/25Gb RDMA Ethernet Controller",
                              "0x020000", "bnxt_en"),
    },
}


def vf_address(pf_address: str, index: int) -> str:
    """Address of VF `index` of a PF at function 0: VFs start at .4 and wrap into the next slots
    (`virtfn10 -> 0000:41:01.6`, host-facts § 3.2)."""
    domain, bus, rest = pf_address.split(":")
    slot = int(rest.split(".")[0], 16)
    n = 4 + index
    return f"{domain}:{bus}:{slot + n // 8:02x}.{n % 8}"
