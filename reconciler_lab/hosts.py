"""Simulated GPU hosts: a root tree laid out as on RHEL 8/9, and what a reboot does to it.

Everything about one host lives inside its root folder, so these functions keep no state of their
own. Files a real host has (proc/cmdline, boot/loader/entries, etc/modprobe.d, sys/bus/pci/...) are
written in the real formats; the lab's own bookkeeping (hardware record, last boot, active vGPUs,
unit states) sits under `<root>/.lab/`, where no probe looks. The initramfs image is a small JSON
record of the files dracut copied, which the emulated `lsinitrd` reads back.

The boot model is deliberately the one host-facts § 1.4 / § 9 describes: nouveau binds NVIDIA GPUs
unless a kernel argument blocks it or a modprobe.d blacklist is present both on the root fs and in
the initramfs; the vGPU manager's `nvidia` module loads only when nouveau did not.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler_lab import catalogue
from reconciler_lab.cpuinfo import cpuinfo_text
from reconciler_lab.records import LabDevice, LabMdevType

if TYPE_CHECKING:
    from reconciler_lab.records import LabHost

LAB_DIR = ".lab"
RECORD = f"{LAB_DIR}/host.json"
BOOT = f"{LAB_DIR}/boot.json"
UNITS = f"{LAB_DIR}/units.json"
MDEVS = f"{LAB_DIR}/mdevs.json"
VGPUS = f"{LAB_DIR}/vgpus.json"
INITRAMFS_FORMAT = "gpu-reconciler-lab-initramfs/1"
MANAGER_UNIT = "nvidia-vgpu-mgr.service"
MANAGER_UNIT_PATH = f"usr/lib/systemd/system/{MANAGER_UNIT}"
# Host driver version of the vGPU manager (captured value in host-facts § 8.A, marked as filler).
NVIDIA_DRIVER_VERSION = "535.161.05"
EMULATED_COMMANDS = ("dracut", "lsinitrd", "grubby", "systemctl", "lsmod", "lspci")
PCI_ROOT = "devices/pci0000:00"

DEFAULT_SERVICES: tuple[tuple[str, str], ...] = (
    ("sshd.service", "active"), ("libvirtd.service", "active"),
    ("supervdsmd.service", "active"), ("vdsmd.service", "active"))

_OS = {
    "rhel9": {"boot_device": "(hd0,gpt2)", "old_kernel": "5.14.0-362.24.1.el9_3.x86_64",
              "name": "Plow", "major": "9"},
    "rhel8": {"boot_device": "(hd0,msdos1)", "old_kernel": "4.18.0-425.3.1.el8_7.x86_64",
              "name": "Ootpa", "major": "8"},
}

# Module sizes as /proc/modules shows them. The vfio/mdev/nvidia values are from captured lsmod
# output (host-facts § 4.4, § 8); the rest are plausible fillers.
_MODULE_SIZE = {
    "nvidia_vgpu_vfio": 65536, "nvidia": 39067648, "mdev": 20480, "vfio_mdev": 16384,
    "vfio_iommu_type1": 53248, "vfio": 69632, "vfio_pci": 16384, "vfio_pci_core": 94208,
    "nouveau": 2527232, "drm_display_helper": 172032, "drm_kms_helper": 274432, "ttm": 98304,
    "drm": 716800, "pci_stub": 16384, "snd_hda_codec_hdmi": 81920, "snd_hda_intel": 57344,
    "snd_hda_codec": 184320, "snd_hda_core": 114688, "kvm_intel": 413696, "kvm_amd": 188416,
    "kvm": 1200128, "irqbypass": 16384, "ccp": 118784, "xfs": 2023424, "libcrc32c": 16384,
    "sd_mod": 69632, "ahci": 49152, "libahci": 53248, "libata": 434176, "i40e": 548864,
    "bnxt_en": 368640, "dm_mod": 204800,
}
# module -> modules it needs; "Used by" is the reverse of this among loaded modules.
_MODULE_DEPS = {
    "nvidia_vgpu_vfio": ("nvidia", "mdev", "vfio"), "vfio_mdev": ("mdev", "vfio"),
    "vfio_iommu_type1": ("vfio",), "vfio_pci": ("vfio_pci_core", "vfio"),
    "vfio_pci_core": ("vfio", "irqbypass"), "nouveau": ("drm_display_helper", "drm_kms_helper",
                                                        "ttm", "drm"),
    "drm_display_helper": ("drm_kms_helper", "drm"), "drm_kms_helper": ("drm",), "ttm": ("drm",),
    "snd_hda_codec_hdmi": ("snd_hda_codec", "snd_hda_core"),
    "snd_hda_intel": ("snd_hda_codec", "snd_hda_core"), "snd_hda_codec": ("snd_hda_core",),
    "kvm_intel": ("kvm",), "kvm_amd": ("kvm", "ccp"), "kvm": ("irqbypass",),
    "xfs": ("libcrc32c",), "ahci": ("libahci",), "libahci": ("libata",),
}
_PROPRIETARY = {"nvidia", "nvidia_vgpu_vfio"}
_BASE_MODULES = {
    "intel": ("dm_mod", "libata", "libahci", "ahci", "sd_mod", "libcrc32c", "xfs", "i40e",
              "irqbypass", "kvm", "kvm_intel"),
    "amd": ("dm_mod", "libata", "libahci", "ahci", "sd_mod", "libcrc32c", "xfs", "bnxt_en",
            "irqbypass", "kvm", "ccp", "kvm_amd"),
}
_NOUVEAU_BLOCK_ARGS = ("rd.driver.blacklist", "rdblacklist", "modprobe.blacklist",
                       "module_blacklist")
_DIST_MODPROBE = {
    "dist-blacklist.conf": "#\n# Listing a module here prevents modprobe from loading it via "
                           "modalias (only\n# aliases from the module itself are used)\n#\n"
                           "# watchdog drivers\nblacklist i8xx_tco\n\n# framebuffer drivers\n"
                           "blacklist aty128fb\nblacklist atyfb\nblacklist radeonfb\n"
                           "blacklist cirrusfb\n",
    "systemd.conf": "# This file is part of systemd.\n#\n# When bonding module is loaded, it "
                    "creates bond0 by default due to max_bonds\n# option default value 1.\n"
                    "options bonding max_bonds=0\noptions dummy numdummies=0\n",
}


# ---- the hardware record ------------------------------------------------------------------------

@dataclass(frozen=True)
class PciFn:
    """One PCI function of the host's hardware (VFs are derived at boot, not recorded)."""

    address: str
    vendor_id: str
    vendor_name: str
    product_id: str
    product_name: str
    pci_class: str
    subsystem_vendor: str
    subsystem_device: str
    role: str                      # gpu | audio | root_port | host_bridge | sata | nic
    iommu_group: int
    parent: str | None = None      # parent PCI address; None: the root complex ("computer")
    model: str | None = None       # catalogue key for gpu/audio functions
    driver: str = ""               # fixed driver of platform devices


@dataclass(frozen=True)
class HostRecord:
    name: str
    os_release: str
    cpu_vendor: str                # intel | amd
    machine_id: str
    boot_device: str
    kernels: tuple[str, ...]       # oldest first; the last is the default
    functions: tuple[PciFn, ...]
    base_modules: tuple[str, ...]
    services: tuple[tuple[str, str], ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> HostRecord:
        data = json.loads(text)
        data["kernels"] = tuple(data["kernels"])
        data["functions"] = tuple(PciFn(**f) for f in data["functions"])
        data["base_modules"] = tuple(data["base_modules"])
        data["services"] = tuple(tuple(s) for s in data["services"])
        return cls(**data)

    def gpu_model(self, fn: PciFn) -> catalogue.GpuModel | None:
        return catalogue.MODELS.get(fn.model) if fn.model else None


def cpu_vendor_of(host: LabHost) -> str:
    for text in (host.cpu_type or "", host.cpu_name):
        if "AMD" in text:
            return "amd"
        if "Intel" in text:
            return "intel"
    return "intel"


def pci_name(address: str) -> str:
    """`0000:86:00.0` -> `pci_0000_86_00_0` (the libvirt nodedev name)."""
    return "pci_" + address.replace(":", "_").replace(".", "_")


def pci_address(name: str) -> str:
    """`pci_0000_86_00_0` -> `0000:86:00.0`."""
    _, domain, bus, slot, function = name.split("_")
    return f"{domain}:{bus}:{slot}.{function}"


def _kernel_of(base_cmdline: str) -> tuple[str, str]:
    """(boot device, kernel version) from the BOOT_IMAGE token."""
    for token in base_cmdline.split():
        if token.startswith("BOOT_IMAGE="):
            image = token.split("=", 1)[1]
            device, _, path = image.rpartition(")")
            return (device + ")" if device else ""), path.rsplit("vmlinuz-", 1)[-1]
    raise ValueError("base_cmdline has no BOOT_IMAGE token")


def _free_groups(used: set[int]) -> Iterator[int]:
    n = 0
    while True:
        if n not in used:
            used.add(n)
            yield n
        n += 1


def record_for(host: LabHost) -> HostRecord:
    """The hardware record of a fleet host: its GPUs (from `host.gpus`, or else the GPU functions
    among `host.devices`) plus the platform devices a server of its CPU vendor shows."""
    vendor = cpu_vendor_of(host)
    os_info = _OS.get(host.os_release, _OS["rhel9"])
    boot_device, kver = _kernel_of(host.base_cmdline)
    gpus: list[tuple[str, str, int | None]] = [(g.model, g.address, g.iommu_group)
                                               for g in host.gpus]
    if not gpus:
        for dev in host.devices:
            m = catalogue.model_by_pci_id(dev.vendor_id or "", dev.product_id or "")
            if m and dev.physical_function is None and dev.name.endswith("_0"):
                gpus.append((m.key, pci_address(dev.name), dev.iommu_group))
    used = {g for _, _, g in gpus if g is not None}
    groups = _free_groups(used)
    plat = catalogue.PLATFORM[vendor]
    fns: list[PciFn] = []

    def platform(role: str, address: str, parent: str | None) -> None:
        d = plat[role]
        fns.append(PciFn(address, d.vendor_id, d.vendor_name, d.product_id, d.product_name,
                         d.pci_class, d.vendor_id, "0000", role, next(groups), parent,
                         driver=d.driver))

    platform("host_bridge", "0000:00:00.0", None)
    platform("sata", "0000:00:17.0", None)
    platform("root_port", "0000:00:1c.0", None)
    platform("nic", "0000:18:00.0", "0000:00:1c.0")
    slots = (s for s in range(0x01, 0x100) if s not in (0x17, 0x1c))
    for key, address, group in gpus:
        m = catalogue.model(key)
        port = f"0000:00:{next(slots):02x}.0"
        platform("root_port", port, None)
        grp = group if group is not None else next(groups)
        fns.append(PciFn(address, catalogue.NVIDIA, catalogue.NVIDIA_NAME, m.product_id,
                         m.product_name, m.pci_class, f"0x{catalogue.NVIDIA}", m.subsystem_device,
                         "gpu", grp, port, key))
        if m.audio_product_id:
            fns.append(PciFn(address[:-1] + "1", catalogue.NVIDIA, catalogue.NVIDIA_NAME,
                             m.audio_product_id, m.audio_product_name or "", catalogue.AUDIO_CLASS,
                             f"0x{catalogue.NVIDIA}", m.subsystem_device, "audio", grp, port, key))
    services = dict(DEFAULT_SERVICES)
    services.update(dict(host.services))
    return HostRecord(
        name=host.name, os_release=host.os_release, cpu_vendor=vendor,
        machine_id=hashlib.sha256(host.name.encode()).hexdigest()[:32],
        boot_device=boot_device or os_info["boot_device"],
        kernels=(os_info["old_kernel"], kver), functions=tuple(fns),
        base_modules=tuple(host.modules) or _BASE_MODULES[vendor],
        services=tuple(sorted(services.items())))


# ---- kernel command line and modprobe.d ---------------------------------------------------------

def update_args(args: Iterable[str], remove: Iterable[str], add: Iterable[str]) -> list[str]:
    """What grubby-bls `update_args` does: removing `key` drops `key` and `key=...`, removing
    `key=value` drops only that token; every added arg first drops its key, then is appended."""
    out = list(args)
    for arg in remove:
        if "=" in arg:
            out = [t for t in out if t != arg]
        else:
            out = [t for t in out if t != arg and not t.startswith(arg + "=")]
    for arg in add:
        key = arg.split("=", 1)[0]
        out = [t for t in out if t != key and not t.startswith(key + "=")]
    return out + list(add)


def _arg_values(tokens: Iterable[str], key: str) -> list[str]:
    return [t.split("=", 1)[1] for t in tokens if t.startswith(key + "=")]


def _norm(module: str) -> str:
    return module.replace("-", "_")


def modprobe_blocked(texts: Iterable[str]) -> set[str]:
    """Modules that `blacklist X` or `install X /bin/false|/bin/true` lines block."""
    blocked: set[str] = set()
    for text in texts:
        for line in text.replace("\\\n", " ").splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[0] == "blacklist":
                blocked.add(_norm(words[1]))
            elif len(words) >= 3 and words[0] == "install" and words[2] in ("/bin/false",
                                                                            "/bin/true"):
                blocked.add(_norm(words[1]))
    return blocked


def effective_modprobe(root: Path) -> dict[str, str]:
    """modprobe.d files kmod reads: /etc masks a same-named file in /usr/lib (host-facts § 2.2)."""
    files: dict[str, str] = {}
    for folder in ("usr/lib/modprobe.d", "etc/modprobe.d"):
        d = root / folder
        if d.is_dir():
            for f in sorted(d.glob("*.conf")):
                files[f.name] = f"{folder}/{f.name}"
    return {path: (root / path).read_text() for path in sorted(files.values())}


# ---- boot outcome (pure) ------------------------------------------------------------------------

@dataclass(frozen=True)
class BootState:
    cmdline: str
    kernel: str
    iommu: bool
    modules: tuple[str, ...]                       # load order
    drivers: tuple[tuple[str, str], ...]           # address -> bound driver (unbound: absent)
    vfs: tuple[tuple[str, int], ...]               # PF address -> enabled VFs
    services: tuple[tuple[str, str], ...]          # unit -> ActiveState

    def driver(self, address: str) -> str | None:
        return dict(self.drivers).get(address)

    @classmethod
    def from_json(cls, text: str) -> BootState:
        d = json.loads(text)
        return cls(cmdline=d["cmdline"], kernel=d["kernel"], iommu=d["iommu"],
                   modules=tuple(d["modules"]), drivers=tuple(tuple(x) for x in d["drivers"]),
                   vfs=tuple(tuple(x) for x in d["vfs"]),
                   services=tuple(tuple(x) for x in d["services"]))


def compute_boot(record: HostRecord, cmdline: str, kernel: str, rootfs_modprobe: Iterable[str],
                 initramfs_modprobe: Iterable[str], manager_installed: bool) -> BootState:
    """What comes up when `record`'s hardware boots `cmdline` with this modprobe config."""
    tokens = cmdline.split()
    cmdline_blocked = {_norm(m) for key in _NOUVEAU_BLOCK_ARGS
                       for v in _arg_values(tokens, key) for m in v.split(",")}
    nouveau_blocked = ("nouveau" in cmdline_blocked
                       or ("nouveau" in modprobe_blocked(rootfs_modprobe)
                           and "nouveau" in modprobe_blocked(initramfs_modprobe)))
    stub_ids = {i.lower() for v in _arg_values(tokens, "pci-stub.ids") for i in v.split(",")}
    vfio_ids = {i.lower() for key in ("vfio-pci.ids", "vfio_pci.ids")
                for v in _arg_values(tokens, key) for i in v.split(",")}
    intel = _arg_values(tokens, "intel_iommu")
    amd = _arg_values(tokens, "amd_iommu")
    iommu = (bool(intel) and intel[-1] == "on") if record.cpu_vendor == "intel" \
        else not (amd and amd[-1] == "off")

    def claimed(fn: PciFn) -> str | None:
        pid = f"{fn.vendor_id}:{fn.product_id}"
        return "pci-stub" if pid in stub_ids else "vfio-pci" if pid in vfio_ids else None

    gpus = [f for f in record.functions if f.role == "gpu"]
    free_gpus = [f for f in gpus if claimed(f) is None]
    nouveau = bool(free_gpus) and not nouveau_blocked
    nvidia = manager_installed and not nouveau
    modules = list(record.base_modules)
    drivers: dict[str, str] = {}
    vfs: dict[str, int] = {}
    for fn in record.functions:
        if fn.driver:
            drivers[fn.address] = fn.driver
        elif fn.role == "gpu":
            m = record.gpu_model(fn)
            drv = claimed(fn) or ("nvidia" if nvidia and m and m.vgpu_driver
                                  else "nouveau" if nouveau else None)
            if drv:
                drivers[fn.address] = drv
            if drv == "nvidia" and m and m.sriov_vfs:
                # NVIDIA's boot-time SR-IOV unit enables the VFs; the vGPU driver binds them.
                vfs[fn.address] = m.sriov_vfs
                for i in range(m.sriov_vfs):
                    drivers[catalogue.vf_address(fn.address, i)] = "nvidia"
        elif fn.role == "audio":
            drivers[fn.address] = claimed(fn) or "snd_hda_intel"
    bound = set(drivers.values())
    rhel8 = record.os_release == "rhel8"
    if nouveau:
        modules += (["drm", "ttm", "drm_kms_helper"] + ([] if rhel8 else ["drm_display_helper"])
                    + ["nouveau"])
    if "pci-stub" in bound or stub_ids:
        modules.append("pci_stub")
    if "vfio-pci" in bound or vfio_ids:
        modules += ["vfio", "vfio_iommu_type1"] + ([] if rhel8 else ["vfio_pci_core"]) \
            + ["vfio_pci"]
    if nvidia:
        modules += [m for m in ["nvidia", "mdev", "vfio", "vfio_iommu_type1"]
                    + (["vfio_mdev"] if rhel8 else []) + ["nvidia_vgpu_vfio"]
                    if m not in modules]
    if "snd_hda_intel" in bound:
        modules += ["snd_hda_core", "snd_hda_codec", "snd_hda_intel", "snd_hda_codec_hdmi"]
    services = []
    for unit, state in record.services:
        if unit == MANAGER_UNIT:
            state = "active" if nvidia else "failed"
        services.append((unit, state))
    if not manager_installed:
        services = [s for s in services if s[0] != MANAGER_UNIT]
    return BootState(cmdline=cmdline, kernel=kernel, iommu=iommu, modules=tuple(modules),
                     drivers=tuple(sorted(drivers.items())), vfs=tuple(sorted(vfs.items())),
                     services=tuple(services))


def initial_boot(host: LabHost, record: HostRecord | None = None) -> BootState:
    """The boot a fleet host is in when the lab starts: base cmdline plus the custom args it booted
    with, its modprobe files (already in the initramfs), the manager if it runs."""
    record = record or record_for(host)
    cmdline = " ".join((host.base_cmdline + " " + host.booted_custom_args).split())
    texts = [t for _, t in host.modprobe_files] + list(_DIST_MODPROBE.values())
    return compute_boot(record, cmdline, record.kernels[-1], texts, texts,
                        any(u == MANAGER_UNIT for u, _ in record.services))


@dataclass(frozen=True)
class ActiveMdev:
    uuid: str
    parent: str                    # PCI address of the mdev parent (GPU or VF)
    mdev_type: str
    vm: str | None = None


@dataclass(frozen=True)
class _Fn:
    """A present PCI function at boot: a recorded one or an enabled VF."""

    fn: PciFn
    physfn: str | None = None
    vf_index: int = -1
    iommu_group: int = 0


def present_functions(record: HostRecord, boot: BootState) -> list[_Fn]:
    out: list[_Fn] = []
    next_group = max((f.iommu_group for f in record.functions), default=0) + 1
    vfs = dict(boot.vfs)
    for fn in record.functions:
        out.append(_Fn(fn, iommu_group=fn.iommu_group))
        m = record.gpu_model(fn) if fn.role == "gpu" else None
        if m and m.sriov_vfs:
            # Groups of VFs stay stable whether or not the VFs are enabled right now.
            for i in range(m.sriov_vfs):
                if i < vfs.get(fn.address, 0):
                    vf = PciFn(catalogue.vf_address(fn.address, i), fn.vendor_id, fn.vendor_name,
                               fn.product_id, fn.product_name, fn.pci_class, fn.subsystem_vendor,
                               fn.subsystem_device, "vf", next_group + i, fn.parent, fn.model)
                    out.append(_Fn(vf, physfn=fn.address, vf_index=i, iommu_group=next_group + i))
            next_group += m.sriov_vfs
    return out


def _mdev_parent_types(record: HostRecord, boot: BootState, f: _Fn) -> tuple[LabMdevType, ...]:
    m = record.gpu_model(f.fn)
    if m is None or boot.driver(f.fn.address) != "nvidia":
        return ()
    if (m.backend == "mdev" and f.physfn is None) or (m.backend == "mdev-vf" and f.physfn):
        return m.mdev_types
    return ()


def available_instances(record: HostRecord, f: _Fn, mdev_type: LabMdevType,
                        active: list[ActiveMdev]) -> int:
    """One type per physical GPU (vdsm's homogeneous rule); an SR-IOV VF holds at most one."""
    if f.physfn is None:
        on_gpu = [a for a in active if a.parent == f.fn.address]
        if any(a.mdev_type != mdev_type.name for a in on_gpu):
            return 0
        return max(mdev_type.max_instances - len(on_gpu), 0)
    m = record.gpu_model(f.fn)
    vf_addresses = {catalogue.vf_address(f.physfn, i) for i in range(m.sriov_vfs if m else 0)}
    on_board = [a for a in active if a.parent in vf_addresses]
    if any(a.parent == f.fn.address for a in on_board):
        return 0
    if any(a.mdev_type != mdev_type.name for a in on_board):
        return 0
    return 1 if len(on_board) < mdev_type.max_instances else 0


def devices_for(record: HostRecord, boot: BootState,
                active: list[ActiveMdev] | None = None) -> tuple[LabDevice, ...]:
    """The host devices the engine lists for this host in this boot (libvirt nodedev view)."""
    active = active or []
    devices = [LabDevice(name="computer", capability="system")]
    present = present_functions(record, boot)
    vf_count = {f.physfn: 0 for f in present if f.physfn}
    for f in present:
        if f.physfn:
            vf_count[f.physfn] += 1
    for f in present:
        fn = f.fn
        m = record.gpu_model(fn) if fn.role in ("gpu", "vf") else None
        types = _mdev_parent_types(record, boot, f)
        if f.physfn and types:
            # An SR-IOV VF parent holds one vGPU; the description still states the board limit.
            types = tuple(LabMdevType(t.name, t.human_readable_name, 1, t.description)
                          for t in types)
        devices.append(LabDevice(
            name=pci_name(fn.address), capability="pci",
            iommu_group=f.iommu_group if boot.iommu else None,
            driver=boot.driver(fn.address), vendor_id=fn.vendor_id, vendor_name=fn.vendor_name,
            product_id=fn.product_id, product_name=fn.product_name,
            parent=pci_name(fn.parent) if fn.parent else "computer", pci_class=fn.pci_class,
            physical_function=pci_name(f.physfn) if f.physfn else None,
            virtual_functions=(m.sriov_totalvfs if m and f.physfn is None and m.sriov_vfs
                               else None),
            mdev_types=types))
    return tuple(devices)


# ---- the root tree ------------------------------------------------------------------------------

def _write(path: Path, text: str, mode: int | None = None) -> None:
    try:
        fh = open(path, "w")
    except FileNotFoundError:  # parents are made on demand: most writes share a folder
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "w")
    with fh:
        fh.write(text)
    if mode is not None:
        os.chmod(path, mode)


def _link(path: Path, target: str) -> None:
    try:
        os.symlink(target, path)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
    except FileExistsError:
        os.unlink(path)
        os.symlink(target, path)


def _load_json(root: Path, rel: str, default: object) -> object:
    p = root / rel
    return json.loads(p.read_text()) if p.exists() else default


def _save_json(root: Path, rel: str, data: object) -> None:
    _write(root / rel, json.dumps(data, indent=1, sort_keys=True) + "\n")


def load_record(root: Path) -> HostRecord:
    p = Path(root) / RECORD
    if not p.exists():
        raise FileNotFoundError(f"{root} is not a lab host root (no {RECORD})")
    return HostRecord.from_json(p.read_text())


def load_boot(root: Path) -> BootState:
    return BootState.from_json((Path(root) / BOOT).read_text())


def _os_release(record: HostRecord) -> str:
    info = _OS.get(record.os_release, _OS["rhel9"])
    match = re.search(r"\.el(\d+)_(\d+)", record.kernels[-1])
    version = f"{match.group(1)}.{match.group(2)}" if match else f"{info['major']}.0"
    major = info["major"]
    return (f'NAME="Red Hat Enterprise Linux"\nVERSION="{version} ({info["name"]})"\n'
            f'ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="{version}"\n'
            f'PLATFORM_ID="platform:el{major}"\n'
            f'PRETTY_NAME="Red Hat Enterprise Linux {version} ({info["name"]})"\n'
            f'ANSI_COLOR="0;31"\nLOGO="fedora-logo-icon"\n'
            f'CPE_NAME="cpe:/o:redhat:enterprise_linux:{major}::baseos"\n'
            f'HOME_URL="https://www.redhat.com/"\n'
            f'DOCUMENTATION_URL="https://access.redhat.com/documentation/en-us/'
            f'red_hat_enterprise_linux/{major}"\nBUG_REPORT_URL="https://bugzilla.redhat.com/"\n\n'
            f'REDHAT_BUGZILLA_PRODUCT="Red Hat Enterprise Linux {major}"\n'
            f'REDHAT_BUGZILLA_PRODUCT_VERSION={version}\n'
            f'REDHAT_SUPPORT_PRODUCT="Red Hat Enterprise Linux"\n'
            f'REDHAT_SUPPORT_PRODUCT_VERSION="{version}"\n')


def _title(record: HostRecord, kver: str) -> str:
    info = _OS.get(record.os_release, _OS["rhel9"])
    match = re.search(r"\.el(\d+)_(\d+)", kver)
    version = f"{match.group(1)}.{match.group(2)}" if match else info["major"]
    return f"Red Hat Enterprise Linux ({kver}) {version} ({info['name']})"


def entry_id(record: HostRecord, kver: str) -> str:
    return f"{record.machine_id}-{kver}"


def _bls_entry(record: HostRecord, kver: str, options: str) -> str:
    return (f"title {_title(record, kver)}\nversion {kver}\nlinux /vmlinuz-{kver}\n"
            f"initrd /initramfs-{kver}.img $tuned_initrd\noptions {options}\n"
            f"grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class rhel\n")


def write_grubenv(root: Path, values: Mapping[str, str]) -> None:
    """grubenv is a 1024-byte block: header, key=value lines, '#' padding."""
    body = "# GRUB Environment Block\n" + "".join(f"{k}={v}\n" for k, v in values.items())
    _write(root / "boot/grub2/grubenv", body + "#" * max(1024 - len(body.encode()), 0))


def read_grubenv(root: Path) -> dict[str, str]:
    p = root / "boot/grub2/grubenv"
    out: dict[str, str] = {}
    if p.exists():
        for line in p.read_text().splitlines():
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                out[k] = v
    return out


def bls_entries(root: Path) -> list[tuple[Path, dict[str, str]]]:
    """BLS snippets, newest kernel first (grubby's index order)."""
    out = []
    for p in (root / "boot/loader/entries").glob("*.conf"):
        fields: dict[str, str] = {}
        for line in p.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key and not key.startswith("#"):
                fields[key] = value.strip()
        out.append((p, fields))
    out.sort(key=lambda e: _version_key(e[1].get("version", "")), reverse=True)
    return out


def _version_key(v: str) -> list[object]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-_]", v)]


def expand_vars(text: str, env: Mapping[str, str]) -> str:
    """GRUB variable expansion of an options line (unset variables are empty)."""
    return " ".join(re.sub(r"\$(\w+)|\$\{(\w+)\}",
                           lambda m: env.get(m.group(1) or m.group(2), ""), text).split())


def default_entry(root: Path) -> tuple[Path, dict[str, str]]:
    entries = bls_entries(root)
    if not entries:
        raise FileNotFoundError(f"{root}: no boot entries")
    saved = read_grubenv(root).get("saved_entry")
    for p, fields in entries:
        if p.stem == saved:
            return p, fields
    return entries[0]


def persisted_args(root: Path) -> list[str]:
    """Arguments the default BLS entry boots with (GRUB variables expanded)."""
    root = Path(root)
    _, fields = default_entry(root)
    return expand_vars(fields.get("options", ""), read_grubenv(root)).split()


def proc_cmdline(root: Path) -> str:
    return (Path(root) / "proc/cmdline").read_text().strip()


def loaded_modules(root: Path) -> set[str]:
    return {line.split()[0] for line in (Path(root) / "proc/modules").read_text().splitlines()
            if line.strip()}


def running_kernel(root: Path) -> str:
    for token in proc_cmdline(root).split():
        if token.startswith("BOOT_IMAGE="):
            return token.rsplit("vmlinuz-", 1)[-1]
    return load_record(root).kernels[-1]


def grubby_update(root: Path, add: list[str], remove: list[str], kernel: str = "ALL") -> None:
    """`grubby --update-kernel=ALL --args=... --remove-args=...`: every BLS entry's options (on
    RHEL 8 entries that use $kernelopts, the grubenv kernelopts instead) and, on RHEL 9,
    /etc/kernel/cmdline so that kernels installed later inherit the change. `kernel` may also be
    DEFAULT or a /boot/vmlinuz-<kver> path: that entry only."""
    root = Path(root)
    env = read_grubenv(root)
    env_changed = False
    entries = bls_entries(root)
    if kernel != "ALL":
        default = default_entry(root)[0]
        entries = [e for e in entries if (e[0] == default if kernel == "DEFAULT"
                                          else e[1].get("linux", "") == kernel.removeprefix("/boot"))]
        if not entries:
            raise ValueError(f"The param {kernel} is incorrect")
    for path, fields in entries:
        options = fields.get("options", "")
        if "$kernelopts" in options.split():
            if not env_changed:
                env["kernelopts"] = " ".join(update_args(env.get("kernelopts", "").split(),
                                                         remove, add))
                env_changed = True
            continue
        new = " ".join(update_args(options.split(), remove, add))
        lines = [f"options {new}" if line.startswith("options ") else line
                 for line in path.read_text().splitlines()]
        _write(path, "\n".join(lines) + "\n")
    if env_changed:
        write_grubenv(root, env)
    kcmd = root / "etc/kernel/cmdline"
    if kernel == "ALL" and kcmd.exists():
        _write(kcmd, " ".join(update_args(kcmd.read_text().split(), remove, add)) + "\n")


# ---- initramfs ----------------------------------------------------------------------------------

def initramfs_path(root: Path, kver: str) -> Path:
    return Path(root) / f"boot/initramfs-{kver}.img"


def build_initramfs(root: Path, kver: str, args: list[str]) -> Path:
    """What `dracut` puts in the image that matters here: the modprobe.d files it copies."""
    root = Path(root)
    files = {}
    for folder in ("etc/modprobe.d", "usr/lib/modprobe.d"):
        for f in sorted((root / folder).glob("*.conf")):
            files[f"{folder}/{f.name}"] = f.read_text()
    path = initramfs_path(root, kver)
    _write(path, json.dumps({"format": INITRAMFS_FORMAT, "kver": kver, "dracut_args": args,
                             "files": files}, indent=1, sort_keys=True) + "\n", 0o600)
    _state_changed(root)
    return path


def read_initramfs(path: Path) -> dict[str, object]:
    data = json.loads(Path(path).read_text())
    if data.get("format") != INITRAMFS_FORMAT:
        raise ValueError(f"{path}: not an initramfs image")
    return data


def initramfs_modprobe(root: Path, kver: str) -> list[str]:
    """Effective modprobe.d content inside the kernel's initramfs ([] if there is no image)."""
    path = initramfs_path(root, kver)
    if not path.exists():
        return []
    files = read_initramfs(path)["files"]
    assert isinstance(files, dict)
    chosen: dict[str, str] = {}
    for folder in ("usr/lib/modprobe.d", "etc/modprobe.d"):
        for p, text in files.items():
            if p.startswith(folder + "/"):
                chosen[p.rsplit("/", 1)[1]] = text
    return list(chosen.values())


# ---- materialise, reboot, runtime vGPUs ---------------------------------------------------------

def _wrapper(cmd: str) -> str:
    from reconciler_lab.hostcmd import wrapper_script   # hostcmd builds on this module
    return wrapper_script(cmd, sys.executable, str(Path(__file__).resolve().parents[2]))


def _state_changed(root: Path, *, booted: bool = False) -> None:
    """Kept answers of the emulated queries are stale now; after a boot, render them anew."""
    from reconciler_lab import hostcmd
    if booted:
        hostcmd.prerender(root)
    else:
        hostcmd.forget_answers(root)


def ensure_host_root(root: Path, host: LabHost) -> Path:
    """Materialise `host` under `root` unless it is there already (then leave it as it is)."""
    root = Path(root)
    if (root / RECORD).exists():
        return root
    record = record_for(host)
    base = [t for t in host.base_cmdline.split() if not t.startswith("BOOT_IMAGE=")]
    custom = host.booted_custom_args.split()
    rhel8 = record.os_release == "rhel8"
    _write(root / "etc/os-release", _os_release(record))
    _write(root / "proc/cpuinfo", cpuinfo_text(record.cpu_vendor, host.cpu_name))
    _write(root / "etc/machine-id", record.machine_id + "\n")
    _write(root / "etc/hostname", f"{host.name}.lab.example\n")
    grub_linux = " ".join(t for t in base if not t.startswith(("root=",)) and t != "ro")
    _write(root / "etc/default/grub",
           'GRUB_TIMEOUT=5\nGRUB_DISTRIBUTOR="$(sed \'s, release .*$,,g\' /etc/system-release)"\n'
           'GRUB_DEFAULT=saved\nGRUB_DISABLE_SUBMENU=true\nGRUB_TERMINAL_OUTPUT="console"\n'
           f'GRUB_CMDLINE_LINUX="{grub_linux}"\nGRUB_DISABLE_RECOVERY="true"\n'
           'GRUB_ENABLE_BLSCFG=true\n')
    env = {"saved_entry": entry_id(record, record.kernels[-1])}
    if rhel8:
        env["kernelopts"] = " ".join(update_args(base, [], custom))
        options = "$kernelopts $tuned_params"
    else:
        env.update({"menu_auto_hide": "1", "boot_success": "0", "boot_indeterminate": "0"})
        options = " ".join(update_args(base + ["$tuned_params"], [], custom))
        _write(root / "etc/kernel/cmdline", " ".join(update_args(base, [], custom)) + "\n")
    write_grubenv(root, env)
    for kver in record.kernels:
        _write(root / f"boot/loader/entries/{entry_id(record, kver)}.conf",
               _bls_entry(record, kver, options))
        _write(root / f"boot/vmlinuz-{kver}", "")
    if record.boot_device.startswith("(hd0,gpt"):
        (root / "boot/efi/EFI/redhat").mkdir(parents=True, exist_ok=True)
    (root / "etc/modprobe.d").mkdir(parents=True, exist_ok=True)
    for name, text in host.modprobe_files:
        _write(root / "etc/modprobe.d" / name, text)
    for name, text in _DIST_MODPROBE.items():
        _write(root / "usr/lib/modprobe.d" / name, text)
    units = dict(record.services)
    for unit in units:
        _write(root / f"usr/lib/systemd/system/{unit}", _unit_file(unit))
    if MANAGER_UNIT in units:
        _write(root / "usr/lib/nvidia/sriov-manage", "#!/bin/sh\n", 0o755)
    _write(root / "etc/modules-load.d/.keep", "")
    for cmd in EMULATED_COMMANDS + (("nvidia-smi",) if MANAGER_UNIT in units else ()):
        _write(root / "usr/bin" / cmd, _wrapper(cmd), 0o755)
    _write(root / RECORD, record.to_json() + "\n")
    for kver in record.kernels:
        build_initramfs(root, kver, ["-f", "--kver", kver])
    reboot(root)
    return root


def _unit_file(unit: str) -> str:
    name = unit.removesuffix(".service")
    if unit == MANAGER_UNIT:
        return ("[Unit]\nDescription=NVIDIA vGPU Manager Daemon\nWants=syslog.target\n"
                "Before=libvirtd.service\n\n[Service]\nType=forking\nKillMode=process\n"
                "ExecStart=/usr/bin/nvidia-vgpu-mgr\nExecStopPost=/bin/rm -rf /var/run/"
                "nvidia-vgpu-mgr\n\n[Install]\nWantedBy=multi-user.target\n")
    return (f"[Unit]\nDescription={name}\n\n[Service]\nExecStart=/usr/sbin/{name}\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def reboot(root: Path) -> None:
    """Boot the default entry: recompute proc/cmdline, loaded modules, driver bindings, IOMMU
    groups, mdev parents and VFs from the persisted configuration. vGPUs are transient (vdsm
    creates them at VM start), so none survive."""
    root = Path(root)
    record = load_record(root)
    _, fields = default_entry(root)
    kver = fields.get("version", record.kernels[-1])
    options = expand_vars(fields.get("options", ""), read_grubenv(root))
    cmdline = " ".join(f"BOOT_IMAGE={record.boot_device}/vmlinuz-{kver} {options}".split())
    boot = compute_boot(record, cmdline, kver, effective_modprobe(root).values(),
                        initramfs_modprobe(root, kver), (root / MANAGER_UNIT_PATH).exists())
    _save_json(root, BOOT, asdict(boot))
    _save_json(root, MDEVS, [])
    _save_json(root, VGPUS, {})
    _save_json(root, UNITS, {u: _unit_state(s) for u, s in boot.services})
    _write(root / "proc/cmdline", cmdline + "\n")
    _write(root / "proc/sys/kernel/osrelease", kver + "\n")
    _write(root / "proc/modules", proc_modules(boot.modules))
    render_sys(root, record, boot)
    _state_changed(root, booted=True)


def _unit_state(active: str) -> dict[str, str]:
    sub = {"active": "running", "failed": "failed", "inactive": "dead"}.get(active, "dead")
    return {"ActiveState": active, "SubState": sub, "LoadState": "loaded",
            "UnitFileState": "enabled"}


def proc_modules(modules: Iterable[str]) -> str:
    """/proc/modules lines, newest first: `name size refcount holders, state offset [taint]`."""
    loaded = list(dict.fromkeys(modules))
    lines = []
    for i, name in enumerate(reversed(loaded)):
        holders = [m for m in loaded if name in _MODULE_DEPS.get(m, ())]
        used = ",".join(holders) + "," if holders else "-"
        taint = " (POE)" if name in _PROPRIETARY else ""
        offset = 0xffffffffc0000000 + (len(loaded) - i) * 0x40000
        lines.append(f"{name} {_MODULE_SIZE.get(name, 16384)} {len(holders)} {used} Live "
                     f"0x{offset:016x}{taint}\n")
    return "".join(lines)


def _active_mdevs(root: Path) -> list[ActiveMdev]:
    data = _load_json(root, MDEVS, [])
    assert isinstance(data, list)
    return [ActiveMdev(**d) for d in data]


class _Tree:
    """A directory tree as one render wants it: files (text, mode), symlinks, directories.

    `sync` makes the disk match it, touching only what differs: a vGPU created or removed changes
    a handful of sysfs files, and rebuilding the whole tree for it (hundreds of files per host)
    was most of what the lab spent starting VMs on hosts with a root.
    """

    def __init__(self) -> None:
        self.files: dict[Path, tuple[str, int | None]] = {}
        self.links: dict[Path, str] = {}
        self.dirs: set[Path] = set()

    def write(self, path: Path, text: str, mode: int | None = None) -> None:
        self.files[path] = (text, mode)

    def link(self, path: Path, target: str) -> None:
        self.links[path] = target

    def mkdir(self, path: Path) -> None:
        self.dirs.add(path)

    def sync(self, top: Path) -> None:
        wanted = set(self.dirs)
        for path in (*self.files, *self.links, *self.dirs):
            for parent in path.parents:
                if parent == top or parent in wanted:
                    break
                wanted.add(parent)
        if top.exists():
            for dirpath, dirnames, filenames in os.walk(top, topdown=False):
                here = Path(dirpath)
                for name in (*dirnames, *filenames):
                    path = here / name
                    if path.is_symlink():
                        if self.links.get(path) != os.readlink(path):
                            path.unlink()
                    elif path.is_dir():
                        if path not in wanted:
                            shutil.rmtree(path)
                    elif path not in self.files or not self._same(path, *self.files[path]):
                        path.unlink()
        top.mkdir(parents=True, exist_ok=True)
        for path in sorted(wanted):
            path.mkdir(exist_ok=True)
        for path, (text, mode) in self.files.items():
            if not path.exists():
                _write(path, text, mode)
        for path, target in self.links.items():
            if not os.path.lexists(path):
                os.symlink(target, path)

    @staticmethod
    def _same(path: Path, text: str, mode: int | None) -> bool:
        try:
            st = path.stat()
            if mode is not None and stat.S_IMODE(st.st_mode) != mode:
                return False
            data = text.encode()
            if st.st_size != len(data):
                return False
            return not data or path.read_bytes() == data
        except OSError:
            return False


def render_sys(root: Path, record: HostRecord, boot: BootState) -> None:
    """Make the sys/ tree that of this boot and the current vGPUs (sysfs is runtime state: the
    whole tree is computed anew, and only what differs on disk is written or removed)."""
    sysdir = root / "sys"
    tree = _Tree()
    active = _active_mdevs(root)
    vgpus = _load_json(root, VGPUS, {})
    assert isinstance(vgpus, dict)
    present = present_functions(record, boot)
    by_addr = {f.fn.address: f for f in present}
    for f in present:
        fn = f.fn
        dev = sysdir / PCI_ROOT / fn.address
        sub_device = fn.subsystem_device
        tree.write(dev / "vendor", f"0x{fn.vendor_id}\n")
        tree.write(dev / "device", f"0x{fn.product_id}\n")
        tree.write(dev / "class", f"{fn.pci_class}\n")
        tree.write(dev / "subsystem_vendor",
               f"{fn.subsystem_vendor if fn.subsystem_vendor.startswith('0x') else '0x' + fn.subsystem_vendor}\n")
        tree.write(dev / "subsystem_device",
               f"{sub_device if sub_device.startswith('0x') else '0x' + sub_device}\n")
        tree.link(sysdir / "bus/pci/devices" / fn.address, f"../../../{PCI_ROOT}/{fn.address}")
        drv = boot.driver(fn.address)
        if drv:
            tree.link(dev / "driver", f"../../../bus/pci/drivers/{drv}")
            tree.link(sysdir / "bus/pci/drivers" / drv / fn.address,
                  f"../../../../{PCI_ROOT}/{fn.address}")
        if boot.iommu:
            tree.link(dev / "iommu_group", f"../../../kernel/iommu_groups/{f.iommu_group}")
            tree.link(sysdir / f"kernel/iommu_groups/{f.iommu_group}/devices/{fn.address}",
                  f"../../../../{PCI_ROOT}/{fn.address}")
        m = record.gpu_model(fn) if fn.role == "gpu" else None
        if m and m.sriov_totalvfs and f.physfn is None:
            n = dict(boot.vfs).get(fn.address, 0)
            tree.write(dev / "sriov_totalvfs", f"{m.sriov_totalvfs}\n")
            tree.write(dev / "sriov_numvfs", f"{n}\n")
            for i in range(n):
                tree.link(dev / f"virtfn{i}", f"../{catalogue.vf_address(fn.address, i)}")
        if f.physfn:
            tree.link(dev / "physfn", f"../{f.physfn}")
            vm = record.gpu_model(fn)
            if vm and vm.backend == "vendor-vfio" and boot.driver(fn.address) == "nvidia":
                tree.write(dev / "nvidia/current_vgpu_type", f"{vgpus.get(fn.address, 0)}\n")
                tree.write(dev / "nvidia/creatable_vgpu_types",
                       creatable_vgpu_types(vm, f.physfn, by_addr, vgpus))
        types = _mdev_parent_types(record, boot, f)
        if types:
            tree.link(sysdir / "class/mdev_bus" / fn.address, f"../../{PCI_ROOT}/{fn.address}")
            for t in types:
                tdir = dev / "mdev_supported_types" / t.name
                tree.write(tdir / "name", f"{t.human_readable_name}\n")
                tree.write(tdir / "description", f"{t.description}\n")
                tree.write(tdir / "device_api", "vfio-pci\n")
                tree.write(tdir / "available_instances",
                       f"{available_instances(record, f, t, active)}\n")
                tree.write(tdir / "create", "", 0o200)
                tree.mkdir(tdir / "devices")
    if boot.iommu:
        unit = "dmar0" if record.cpu_vendor == "intel" else "ivhd0"
        tree.mkdir(sysdir / "devices/virtual/iommu" / unit)
        tree.link(sysdir / "class/iommu" / unit, f"../../devices/virtual/iommu/{unit}")
    tree.mkdir(sysdir / "kernel/iommu_groups")
    if "mdev" in boot.modules:
        tree.mkdir(sysdir / "bus/mdev/devices")
    for a in active:
        tdir = sysdir / PCI_ROOT / a.parent / "mdev_supported_types" / a.mdev_type
        mdir = sysdir / PCI_ROOT / a.parent / a.uuid
        tree.mkdir(mdir)
        tree.link(mdir / "mdev_type", f"../mdev_supported_types/{a.mdev_type}")
        tree.write(mdir / "remove", "", 0o200)
        tree.link(tdir / "devices" / a.uuid, f"../../../{a.uuid}")
        tree.link(sysdir / "bus/mdev/devices" / a.uuid, f"../../../{PCI_ROOT}/{a.parent}/{a.uuid}")
    if record.boot_device.startswith("(hd0,gpt"):
        tree.mkdir(sysdir / "firmware/efi")
    for name in ("nvidia", "nouveau", "vfio_pci", "pci_stub"):
        if name in boot.modules:
            tree.write(sysdir / f"module/{name}/initstate", "live\n")
    tree.sync(sysdir)
    proc_nvidia = root / "proc/driver/nvidia"
    if "nvidia" in boot.modules:
        _write(sysdir / "module/nvidia/version", f"{NVIDIA_DRIVER_VERSION}\n")
        _write(proc_nvidia / "version",
               f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {NVIDIA_DRIVER_VERSION}  "
               "Thu Feb 22 05:34:20 UTC 2024\nGCC version:  gcc version 11.4.1 20231218 "
               "(Red Hat 11.4.1-3) (GCC) \n")
    elif proc_nvidia.exists():
        shutil.rmtree(proc_nvidia)


def creatable_vgpu_types(m: catalogue.GpuModel, pf: str, by_addr: Mapping[str, _Fn],
                         vgpus: Mapping[str, int]) -> str:
    """Kernel format (`%-5d : %s`): the full list while the board is empty, then only the type in
    use while instances remain, then just the header."""
    on_board = {t for a, t in vgpus.items() if t and a in by_addr and by_addr[a].physfn == pf}
    used = sum(1 for a, t in vgpus.items() if t and a in by_addr and by_addr[a].physfn == pf)
    lines = ["ID    : vGPU Name"]
    for t in m.vgpu_types:
        if not on_board or (t.id in on_board and used < t.max_instances):
            lines.append(f"{t.id:<5d} : {t.name}")
    return "\n".join(lines) + "\n"


def host_devices(root: Path) -> tuple[LabDevice, ...]:
    """The engine's device list for the host in its current boot (after a reboot, drivers, IOMMU
    groups, VFs and mdev types may differ from what the fleet file started with)."""
    root = Path(root)
    return devices_for(load_record(root), load_boot(root))


def create_mdev(root: Path, parent: str, mdev_type: str, uuid: str, vm: str | None = None) -> None:
    """What writing a UUID to `mdev_supported_types/<type>/create` does; refuses like the kernel
    when the type has no available instance on that parent."""
    root = Path(root)
    record = load_record(root)
    boot = load_boot(root)
    f = next((f for f in present_functions(record, boot) if f.fn.address == parent), None)
    types = _mdev_parent_types(record, boot, f) if f else ()
    t = next((t for t in types if t.name == mdev_type), None)
    active = _active_mdevs(root)
    if f is None or t is None:
        raise ValueError(f"{parent}: no mdev type {mdev_type}")
    if any(a.uuid == uuid for a in active):
        raise ValueError(f"mdev {uuid} exists")
    if available_instances(record, f, t, active) < 1:
        raise ValueError(f"{parent}: no available instance of {mdev_type}")
    active.append(ActiveMdev(uuid, parent, mdev_type, vm))
    _save_json(root, MDEVS, [asdict(a) for a in active])
    render_sys(root, record, boot)
    _state_changed(root)


def remove_mdev(root: Path, uuid: str) -> None:
    root = Path(root)
    active = _active_mdevs(root)
    if not any(a.uuid == uuid for a in active):
        raise ValueError(f"no mdev {uuid}")
    _save_json(root, MDEVS, [asdict(a) for a in active if a.uuid != uuid])
    render_sys(root, load_record(root), load_boot(root))
    _state_changed(root)


def active_mdevs(root: Path) -> list[ActiveMdev]:
    return _active_mdevs(Path(root))


def set_vgpu_type(root: Path, vf: str, type_id: int) -> None:
    """What writing `nvidia/current_vgpu_type` of a vendor-VFIO VF does (0 destroys the vGPU)."""
    root = Path(root)
    record = load_record(root)
    boot = load_boot(root)
    present = present_functions(record, boot)
    by_addr = {f.fn.address: f for f in present}
    f = by_addr.get(vf)
    m = record.gpu_model(f.fn) if f else None
    if f is None or f.physfn is None or m is None or m.backend != "vendor-vfio" \
            or boot.driver(vf) != "nvidia":
        raise ValueError(f"{vf}: not a vendor-VFIO vGPU function")
    vgpus = _load_json(root, VGPUS, {})
    assert isinstance(vgpus, dict)
    if type_id:
        creatable = creatable_vgpu_types(m, f.physfn, by_addr, vgpus).splitlines()[1:]
        if vgpus.get(vf) or not any(int(line.split(":")[0]) == type_id for line in creatable):
            raise ValueError(f"{vf}: vGPU type {type_id} is not creatable")
        vgpus[vf] = type_id
    else:
        vgpus.pop(vf, None)
    _save_json(root, VGPUS, vgpus)
    render_sys(root, record, boot)
    _state_changed(root)
