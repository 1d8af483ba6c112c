"""Host profiles -> per-host desired settings, through selectors (cluster and fnmatch name globs).

Several profiles may select one host. Their settings merge field by field; two profiles setting one
field to different values is a conflict, reported as a blocker naming both profiles and where they
are written. Rollout settings never conflict: the strictest wins (smallest maxUnavailable, `never`
over `allowed`), because a looser rollout than any profile asked for is never what was meant.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from reconciler.model.cmdline import arg_key
from reconciler.model.facts import Host
from reconciler.model.ownership import OUR_MODPROBE_PATH
from reconciler.spec.model import (HostProfile, KernelSpec, ModprobeSpec, RebootPolicy,
                                   VgpuManagerPolicy, VgpuPlacement)

MODPROBE_PATH = OUR_MODPROBE_PATH
MODPROBE_HEADER = ("# Managed by gpu-reconciler from the desired-state spec; local edits are "
                   "overwritten.\n")


@dataclass(frozen=True)
class HostDesired:
    """Everything the profiles want for one host, merged."""

    host: str
    profiles: tuple[str, ...]
    location: str | None
    kernel: KernelSpec | None
    modprobe: ModprobeSpec | None
    vgpu_manager: VgpuManagerPolicy
    vgpu_placement: VgpuPlacement | None
    max_unavailable: int
    reboot: RebootPolicy
    conflicts: tuple[str, ...] = ()

    @property
    def pci_stub_ids(self) -> tuple[str, ...]:
        return (self.kernel.pci_stub or ()) if self.kernel else ()

    @property
    def nouveau_blacklisted(self) -> bool:
        by_kernel = bool(self.kernel and self.kernel.blacklist_nouveau)
        by_modprobe = bool(self.modprobe and "nouveau" in
                           {m.replace("-", "_") for m in self.modprobe.blacklist})
        return by_kernel or by_modprobe


def selects(profile: HostProfile, host: Host) -> bool:
    sel = profile.selector
    if sel.cluster is not None and sel.cluster != host.cluster:
        return False
    return not sel.names or any(fnmatchcase(host.name, glob) for glob in sel.names)


def _where(profile: HostProfile) -> str:
    return f"profile {profile.name!r}" + (f" ({profile.location})" if profile.location else "")


class _Merger:
    def __init__(self, host: str) -> None:
        self.host = host
        self.values: dict[str, tuple[object, HostProfile]] = {}
        self.conflicts: list[str] = []

    def put(self, field: str, value: object, profile: HostProfile) -> None:
        if value is None:
            return
        seen = self.values.get(field)
        if seen is None:
            self.values[field] = (value, profile)
        elif seen[0] != value:
            self.conflicts.append(
                f"host {self.host}: {_where(seen[1])} and {_where(profile)} set {field} "
                f"differently ({_show(seen[0])} vs {_show(value)}); make them agree or narrow "
                "their selectors")

    def get(self, field: str) -> object:
        seen = self.values.get(field)
        return None if seen is None else seen[0]


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    if isinstance(value, ModprobeSpec):
        return "a different modprobe file"
    return str(value)


def expand_host(host: Host, profiles: Sequence[HostProfile]) -> HostDesired | None:
    """Merge the profiles that select `host`; None when none does (the host is not managed)."""
    chosen = [p for p in profiles if selects(p, host)]
    if not chosen:
        return None
    m = _Merger(host.name)
    extra: dict[str, tuple[str, HostProfile]] = {}
    kernel_seen = False
    for p in chosen:
        if p.kernel is not None:
            kernel_seen = True
            m.put("kernel.iommu", p.kernel.iommu, p)
            m.put("kernel.iommuPassthrough", p.kernel.iommu_passthrough, p)
            m.put("kernel.blacklistNouveau", p.kernel.blacklist_nouveau, p)
            m.put("kernel.pciStub", p.kernel.pci_stub, p)
            for raw in p.kernel.extra_args:
                key = arg_key(raw)
                if key in extra and extra[key][0] != raw:
                    m.conflicts.append(
                        f"host {host.name}: {_where(extra[key][1])} and {_where(p)} set kernel "
                        f"argument {key} differently ({extra[key][0]} vs {raw})")
                extra.setdefault(key, (raw, p))
        m.put("modprobe", p.modprobe, p)
        if p.vgpu is not None:
            m.put("vgpu.manager", None if p.vgpu.manager == "ignore" else p.vgpu.manager, p)
            m.put("vgpu.placement", p.vgpu.placement, p)
    kernel = None
    if kernel_seen:
        kernel = KernelSpec(iommu=m.get("kernel.iommu"),  # type: ignore[arg-type]
                            iommu_passthrough=m.get("kernel.iommuPassthrough"),  # type: ignore[arg-type]
                            blacklist_nouveau=m.get("kernel.blacklistNouveau"),  # type: ignore[arg-type]
                            pci_stub=m.get("kernel.pciStub"),  # type: ignore[arg-type]
                            extra_args=tuple(v[0] for v in extra.values()))
    first = chosen[0]
    return HostDesired(
        host=host.name,
        profiles=tuple(p.name for p in chosen),
        location=str(first.location) if first.location else None,
        kernel=kernel,
        modprobe=m.get("modprobe"),  # type: ignore[arg-type]
        vgpu_manager=m.get("vgpu.manager") or "ignore",  # type: ignore[arg-type]
        vgpu_placement=m.get("vgpu.placement"),  # type: ignore[arg-type]
        max_unavailable=min(p.rollout.max_unavailable for p in chosen),
        reboot="never" if any(p.rollout.reboot == "never" for p in chosen) else "allowed",
        conflicts=tuple(m.conflicts),
    )


def render_modprobe(spec: ModprobeSpec) -> str:
    """Our modprobe.d file: header, sorted blacklist lines, then options lines sorted by module."""
    lines = [MODPROBE_HEADER.rstrip("\n")]
    lines += [f"blacklist {mod}" for mod in sorted(set(spec.blacklist))]
    lines += [f"options {mod} {' '.join(opts)}" for mod, opts in sorted(spec.options) if opts]
    return "\n".join(lines) + "\n"
