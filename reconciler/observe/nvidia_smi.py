"""`nvidia-smi` on a vGPU host: the per-GPU CSV query and the per-vGPU report, read together.

Only machine-readable forms are parsed: `--query-gpu ... --format=csv,noheader,nounits` for the
physical GPUs, and `nvidia-smi vgpu -q` for the vGPUs (the `vgpu` table truncates names and VM
ids with `...`; host-facts § 6.2). `vgpu -q` is `Key : value` lines indented by four spaces per
level: `GPU <bus id>` at column 0, `Active vGPUs` and `vGPU ID` at 4, a vGPU's fields at 8, and
blocks such as `FB Memory Usage` or `Utilization` deeper (not needed here).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from reconciler.model.facts import NvidiaSmiSummary, NvidiaVgpu, pci_address
from reconciler.observe.parsers import ParseError, parse_nvidia_smi_csv

_GPU_LINE = re.compile(r"^GPU\s+([0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7])\s*$")
_FIELD = re.compile(r"^( *)([^:]+?)\s*:\s?(.*)$")
_UNSET = {"", "N/A", "Not Available", "[N/A]"}


@dataclass(frozen=True)
class VgpuSection:
    """One physical GPU's part of `nvidia-smi vgpu -q`."""

    gpu: str                             # sysfs spelling: 0000:05:00.0
    active: int | None
    vgpus: tuple[NvidiaVgpu, ...]


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text in _UNSET else text


def _vm_name(text: str) -> str | None:
    """The QEMU `-name` as printed; libvirt adds `,debug-threads=on`, which no oVirt VM name can
    contain (names are letters, digits, `.`, `_` and `-`)."""
    name = _value(text)
    return name.split(",debug-threads=", 1)[0] if name else None


def parse_vgpu_query(text: str) -> tuple[VgpuSection, ...]:
    """The sections of `nvidia-smi vgpu -q`, in the order printed."""
    if "No supported devices in vGPU mode" in text:
        return ()
    sections: list[VgpuSection] = []
    current: VgpuSection | None = None
    vgpu: dict[str, str] | None = None
    vgpus: list[NvidiaVgpu] = []

    def close_vgpu() -> None:
        nonlocal vgpu
        if vgpu is not None and current is not None:
            type_text = _value(vgpu.get("vGPU Type", ""))
            vgpus.append(NvidiaVgpu(
                gpu=current.gpu, vm_name=_vm_name(vgpu.get("VM Name", "")),
                vm_uuid=_value(vgpu.get("VM UUID", "")),
                vgpu_name=_value(vgpu.get("vGPU Name", "")),
                vgpu_type=int(type_text) if type_text and type_text.isdigit() else None,
                mdev_uuid=(_value(vgpu.get("MDEV UUID", "")) or "").lower() or None))
        vgpu = None

    def close_gpu() -> None:
        nonlocal current
        close_vgpu()
        if current is not None:
            sections.append(replace(current, vgpus=tuple(vgpus)))
        vgpus.clear()
        current = None

    for line in text.splitlines():
        if not line.strip():
            continue
        m = _GPU_LINE.match(line)
        if m:
            close_gpu()
            current = VgpuSection(pci_address(m.group(1)), None, ())
            continue
        f = _FIELD.match(line)
        if current is None:
            continue            # a banner or a header block before the first GPU
        if f is None:
            if len(line) - len(line.lstrip(" ")) > 4:
                continue        # the name of a nested block (`FB Memory Usage`, `PCI`)
            raise ParseError(f"nvidia-smi vgpu -q: unexpected line {line[:80]!r}")
        indent, key, value = len(f.group(1)), f.group(2).strip(), f.group(3)
        if indent == 0:
            raise ParseError(f"nvidia-smi vgpu -q: unexpected line {line[:80]!r}")
        if indent == 4 and key == "Active vGPUs":
            try:
                current = replace(current, active=int(value.strip()))
            except ValueError:
                raise ParseError(f"nvidia-smi vgpu -q: Active vGPUs {value.strip()[:20]!r}") from None
        elif indent == 4 and key == "vGPU ID":
            close_vgpu()
            vgpu = {}
        elif indent == 8 and vgpu is not None:
            vgpu[key] = value
    close_gpu()
    if not sections and text.strip():
        raise ParseError("nvidia-smi vgpu -q: no GPU section")
    return tuple(sections)


def summarize(csv: str, vgpu_query: str | None) -> NvidiaSmiSummary:
    """The CSV query's GPUs with their vGPU counts and vGPUs; `vgpu_query` None: not known."""
    summary = parse_nvidia_smi_csv(csv)
    if vgpu_query is None:
        return summary
    sections = {s.gpu: s for s in parse_vgpu_query(vgpu_query)}
    gpus = tuple(replace(g, vgpus_active=sections[g.address].active
                         if g.address in sections else 0) for g in summary.gpus)
    vgpus = tuple(v for s in sections.values() for v in s.vgpus)
    active = sum(s.active or 0 for s in sections.values())
    return replace(summary, gpus=gpus, vgpus=vgpus, vgpus_active=active)
