"""The host's own CPU vendor, from the first processor block of /proc/cpuinfo.

The engine gives no vendor field; the planner derives one from CPU type names (observe/vendor.py).
The host's kernel knows for certain, and it decides `intel_iommu` against `amd_iommu`, so the probe
reads it too and a disagreement can be reported instead of acted on.
"""
from __future__ import annotations

from dataclasses import dataclass

from reconciler.model.facts import CpuVendor
from reconciler.observe.parsers import ParseError

# x86 `vendor_id` strings as the kernel prints them (arch/x86/kernel/cpu/*.c vendor tables). Hygon
# Dhyana is AMD Zen licensed: the kernel drives its IOMMU with the AMD-Vi driver (amd_iommu=).
_X86_VENDORS: dict[str, CpuVendor] = {
    "GenuineIntel": "intel",
    "AuthenticAMD": "amd",
    "HygonGenuine": "amd",
}


@dataclass(frozen=True)
class CpuInfo:
    vendor: CpuVendor | None             # None: a CPU no IOMMU rule of ours covers (ARM, ...)
    vendor_id: str | None                # the raw word: GenuineIntel, AuthenticAMD, IBM/S390
    model: str | None


def parse_cpuinfo(text: str) -> CpuInfo:
    """`key<TAB>: value` lines; the first block (up to the first blank line) is enough."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ParseError(f"/proc/cpuinfo: unexpected line {line[:80]!r}")
        fields.setdefault(key.strip(), value.strip())
    if not fields:
        raise ParseError("/proc/cpuinfo: empty")
    vendor_id = fields.get("vendor_id")
    model = fields.get("model name")
    vendor: CpuVendor | None = None
    if vendor_id is not None:
        vendor = _X86_VENDORS.get(vendor_id)
        if vendor is None and vendor_id == "IBM/S390":
            vendor = "ibms390"
    elif fields.get("cpu", "").startswith("POWER"):
        # ppc64 has no vendor_id; its `cpu` line names the POWER generation.
        vendor, vendor_id, model = "ibm", "IBM", fields["cpu"]
    return CpuInfo(vendor=vendor, vendor_id=vendor_id, model=model)
