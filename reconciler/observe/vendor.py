"""CPU vendor of a host, derived from what the engine exposes (shared/ovirt-api.md § 1.4).

The REST API has no vendor field. The Admin Portal takes the vendor from the cluster's CPU type, so
we do the same, cross-check it against the engine-computed `host.cpu.type`, and use the free-text
`host.cpu.name` only when nothing better exists. A disagreement is reported, never guessed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from reconciler.model.facts import CpuVendor

# CPU type names often start with "Secure " ("Secure AMD EPYC"), so the vendor word is searched for
# anywhere in the name, as a word of its own ("GenuineIntel" style tokens are not names we get).
_INTEL = re.compile(r"\bintel\b", re.IGNORECASE)
_AMD = re.compile(r"\bamd\b", re.IGNORECASE)

# Architectures whose engine vendor is fixed and which take no IOMMU kernel argument.
_ARCH_VENDOR: dict[str, CpuVendor] = {"ppc64": "ibm", "ppc64le": "ibm", "s390x": "ibms390"}


@dataclass(frozen=True)
class VendorVerdict:
    vendor: CpuVendor | None
    note: str | None = None


def vendor_in(text: str | None) -> CpuVendor | None:
    """`intel` or `amd` when exactly one of the two words appears in `text`."""
    if not text:
        return None
    intel, amd = bool(_INTEL.search(text)), bool(_AMD.search(text))
    if intel == amd:
        return None
    return "intel" if intel else "amd"


def derive_vendor(cluster_cpu_type: str | None, cluster_architecture: str | None,
                  host_cpu_type: str | None, host_cpu_name: str | None) -> VendorVerdict:
    """Vendor of one host from its cluster's CPU type, its own CPU type and its CPU model name."""
    arch_vendor = _ARCH_VENDOR.get((cluster_architecture or "").lower())
    if arch_vendor is not None:
        return VendorVerdict(arch_vendor)
    from_cluster = vendor_in(cluster_cpu_type)
    from_host = vendor_in(host_cpu_type)
    if from_cluster and from_host and from_cluster != from_host:
        return VendorVerdict(None, f"cluster CPU type {cluster_cpu_type!r} is {from_cluster} but "
                                   f"host CPU type {host_cpu_type!r} is {from_host}")
    if from_cluster:
        return VendorVerdict(from_cluster)
    if from_host:
        return VendorVerdict(from_host)
    from_name = vendor_in(host_cpu_name)
    if from_name:
        return VendorVerdict(from_name, f"derived from the CPU model name {host_cpu_name!r} only "
                                        "(neither cluster nor host has a CPU type)")
    return VendorVerdict(None, "no vendor in the cluster CPU type, host CPU type or CPU model name")
