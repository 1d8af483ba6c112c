"""What the engine derives from CPU vendors: whether the IOMMU is on, and whether a host's CPU
can run its cluster's CPU type."""
from __future__ import annotations


def iommu_enabled(cmdline: str, cpu_words: str, architecture: str) -> bool:
    """device_passthrough.enabled: the booted kernel has the vendor's IOMMU switched on."""
    if architecture in ("ppc64", "ppc64le", "s390x"):
        return True
    tokens = cmdline.split()
    if "AMD" in cpu_words:
        return "amd_iommu=off" not in tokens   # AMD kernels enable the IOMMU by default
    return "intel_iommu=on" in tokens


def missing_vendor_flag(cluster_cpu_type: str | None, architecture: str,
                        host_cpu_words: str) -> str | None:
    """The virtualisation flag of the cluster CPU type's vendor when the host's CPU lacks it
    (an Intel host moved into an AMD cluster lacks `svm`), else None."""
    if architecture != "x86_64" or not cluster_cpu_type:
        return None
    for vendor, flag in (("AMD", "svm"), ("Intel", "vmx")):
        if vendor in cluster_cpu_type and vendor not in host_cpu_words:
            return flag
    return None


__all__ = ["iommu_enabled", "missing_vendor_flag"]
