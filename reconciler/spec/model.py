"""DesiredState: the merged, validated content of every spec file, as immutable values.

Built by `reconciler.spec.load_desired(paths)` after YAML, JSON Schema and semantic checks pass.
Field names follow the spec keys (camelCase in YAML, snake_case here). Device names are normalised
to the engine's libvirt form (`pci_0000_03_00_0`); relative file paths are already resolved against
the folder of the spec file that named them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

API_VERSION = "gpu-reconciler/v1"

VgpuManagerPolicy = Literal["required", "absent", "ignore"]
VgpuPlacement = Literal["consolidated", "separated"]
RebootPolicy = Literal["allowed", "never"]
RestartPolicy = Literal["whenDown", "allowed", "never"]
SecondaryDisplay = Literal["vnc", "none"]
ConsolePolicy = Literal["addVnc", "keep"]


@dataclass(frozen=True)
class Location:
    """Where a value was written: file as the user typed it, 1-based line and column."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class EngineSpec:
    """How to reach the engine: a real one (url + credentials) or the embedded lab (`lab_fleet`)."""

    url: str | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    insecure: bool = False
    lab_fleet: str | None = None          # fleet name or path of a fleet YAML (embedded lab engine)
    lab_state: Path | None = None         # where the embedded lab keeps its state
    timeout_seconds: float = 60.0

    @property
    def is_lab(self) -> bool:
        return self.lab_fleet is not None


@dataclass(frozen=True)
class SshAccess:
    user: str = "root"
    port: int = 22
    identity_file: Path | None = None
    known_hosts_file: Path | None = None
    concurrency: int = 16
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class HostAccess:
    """How to reach hosts for probes and host files. `ssh` None: engine facts only (or lab hosts)."""

    ssh: SshAccess | None = None
    local_roots: Path | None = None       # folder holding one root tree per host name (fixtures)


@dataclass(frozen=True)
class KernelSpec:
    """Managed kernel arguments. None means "not managed": leave whatever is there alone."""

    iommu: bool | None = None
    iommu_passthrough: bool | None = None
    blacklist_nouveau: bool | None = None
    pci_stub: tuple[str, ...] | None = None     # "10de:11b4" ids; () means manage and keep empty
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModprobeSpec:
    """Content of our own /etc/modprobe.d file. None on the profile: we write no file."""

    blacklist: tuple[str, ...] = ()
    options: tuple[tuple[str, tuple[str, ...]], ...] = ()   # (module, ("opt=val", ...)), sorted


@dataclass(frozen=True)
class VgpuHostSpec:
    manager: VgpuManagerPolicy = "ignore"
    placement: VgpuPlacement | None = None


@dataclass(frozen=True)
class RolloutSpec:
    max_unavailable: int = 1
    reboot: RebootPolicy = "allowed"


@dataclass(frozen=True)
class HostSelector:
    cluster: str | None = None
    names: tuple[str, ...] = ()           # fnmatch-style globs; empty = every host of the cluster


@dataclass(frozen=True)
class HostProfile:
    name: str
    selector: HostSelector
    kernel: KernelSpec | None = None
    modprobe: ModprobeSpec | None = None
    vgpu: VgpuHostSpec | None = None
    rollout: RolloutSpec = field(default_factory=RolloutSpec)
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PassthroughSpec:
    host: str
    devices: tuple[str, ...]              # normalised: pci_0000_03_00_0


@dataclass(frozen=True)
class VgpuSpec:
    type: str                             # mdev type name, e.g. nvidia-22
    instances: int = 1
    secondary_display: SecondaryDisplay = "vnc"
    driver_params: str | None = None
    console: ConsolePolicy = "addVnc"     # keep: the VM's graphics consoles are left as found


@dataclass(frozen=True)
class VmSpec:
    name: str
    passthrough: PassthroughSpec | None = None
    vgpu: VgpuSpec | None = None
    restart: RestartPolicy = "whenDown"
    location: Location | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PruneSpec:
    """Opt-in removal of GPU use no spec mentions; off unless a spec file asks for it."""

    unmanaged_vgpus: bool = False
    unmanaged_host_devices: bool = False
    vms: tuple[str, ...] = ("*",)         # fnmatch globs: which unmanaged VMs may be pruned
    location: Location | None = field(default=None, compare=False)

    @property
    def enabled(self) -> bool:
        return self.unmanaged_vgpus or self.unmanaged_host_devices


@dataclass(frozen=True)
class DesiredState:
    engine: EngineSpec
    host_access: HostAccess = field(default_factory=HostAccess)
    host_profiles: tuple[HostProfile, ...] = ()
    vms: tuple[VmSpec, ...] = ()
    prune: PruneSpec = field(default_factory=PruneSpec)
    sources: tuple[str, ...] = field(default=(), compare=False)   # spec files, as typed

    def vm(self, name: str) -> VmSpec | None:
        return next((v for v in self.vms if v.name == name), None)


def normalise_device_name(name: str) -> str:
    """`0000:03:00.0` -> `pci_0000_03_00_0`; names already in libvirt form pass unchanged."""
    if name.startswith("pci_"):
        return name
    domain, bus, rest = name.split(":")
    slot, function = rest.split(".")
    return f"pci_{domain}_{bus}_{slot}_{function}".lower()
