"""What the map checks by itself on a host, beside the plan's drift: facts that disagree."""
from __future__ import annotations

from collections.abc import Sequence

from reconciler.fleetmap.model import Flag, GpuView
from reconciler.model.cmdline import tokenize
from reconciler.model.facts import Host, Observed, ProbeFacts

_VENDOR_WORD = {"intel": "GenuineIntel", "amd": "AuthenticAMD", "ibm": "IBM", "ibms390": "IBM/S390"}


def host_checks(host: Host, probe: ProbeFacts | None, observed: Observed,
                gpus: Sequence[GpuView]) -> list[Flag]:
    out: list[Flag] = []
    ok = probe if probe is not None and probe.ok else None
    if ok is not None and ok.cpu_vendor and host.cpu_vendor and ok.cpu_vendor != host.cpu_vendor:
        cluster = next((c for c in observed.clusters if c.name == host.cluster), None)
        source = (cluster.cpu_type if cluster and cluster.cpu_type else host.cpu_type) or "?"
        out.append(Flag("check", f"CPU vendor: the engine's CPU type {source!r} says "
                                 f"{host.cpu_vendor}, the host's /proc/cpuinfo says "
                                 f"{ok.cpu_vendor_id} ({ok.cpu_vendor}): the IOMMU argument "
                                 "cannot be chosen until they agree"))
    vendor = (ok.cpu_vendor if ok else None) or host.cpu_vendor
    booted = ok.proc_cmdline if ok and ok.proc_cmdline else host.reported_kernel_cmdline
    on = {t.key for t in tokenize(booted) if t.value == "on"}
    if vendor == "amd" and "intel_iommu" in on:
        out.append(Flag("check", "booted with intel_iommu=on on an AMD CPU: the argument has no "
                                 "effect there (amd_iommu is the vendor's switch)"))
    elif vendor == "intel" and "amd_iommu" in on and "intel_iommu" not in on:
        out.append(Flag("check", "booted with amd_iommu=on on an Intel CPU: the Intel IOMMU "
                                 "stays off without intel_iommu=on"))
    iommu_off = (ok.iommu_enabled is False) if ok and ok.iommu_enabled is not None \
        else not host.device_passthrough
    held = [g.address for g in gpus if g.mode == "passthrough"]
    if iommu_off and held and host.status == "up":
        out.append(Flag("check", f"the IOMMU is off: the VMs holding {', '.join(held)} "
                                 "cannot start here"))
    return out
