"""Observed state -> a spec that describes the fleet as it is, so a running fleet can be adopted.

Hosts are grouped into one profile per cluster and identical observed settings (managed kernel
arguments found in the engine's custom cmdline, only those it sets: an argument it does not set is
left unmanaged, never exported as "must be absent"; vGPU placement). VMs get their passthrough devices
(non-placeholder host devices on their pinned host) and their vGPUs (type, count, display, driver
params). Planning the exported spec against the same fleet shows no changes: hosts whose engine
args are configured but not booted get `rollout.reboot: never`, so they show as pending a reboot
instead of being cycled (remove it to let the reconciler reboot them).
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

import yaml

from reconciler.log import get_logger
from reconciler.model.cmdline import tokenize
from reconciler.model.facts import Host, Observed, Vm
from reconciler.spec.model import API_VERSION

_log = get_logger(__name__)

IOMMU_KEYS = ("intel_iommu", "amd_iommu")
PCI_STUB_KEY = "pci_stub.ids"
NVIDIA_VENDOR_ID = "10de"
# What the spec schema accepts as an extra kernel argument; anything else (quoted values) cannot
# be expressed and is left unmanaged, with a warning.
_EXTRA_ARG = re.compile(r"^[A-Za-z0-9_.,:=+/@%][A-Za-z0-9_.,:=+/@%-]*$")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def kernel_from_cmdline(custom: str) -> dict[str, Any]:
    """The spec `kernel` block that the engine custom cmdline `custom` expresses."""
    iommu = passthrough = nouveau = False
    stub: list[str] = []
    extra: list[str] = []
    for tok in tokenize(custom):
        if tok.key in IOMMU_KEYS and tok.value == "on":
            iommu = True
        elif tok.key == "iommu" and tok.value == "pt":
            passthrough = True
        elif tok.key == "rdblacklist" and tok.value == "nouveau":
            nouveau = True
        elif tok.key == PCI_STUB_KEY and tok.value:
            stub.extend(i.lower() for i in tok.value.split(",") if i and i.lower() not in stub)
        elif _EXTRA_ARG.match(tok.raw):
            extra.append(tok.raw)
        else:
            _log.warning("export.kernel_arg_skipped", arg=tok.raw,
                         reason="not expressible as kernel.extraArgs; left unmanaged")
    # Only what the engine line sets: an argument it does not set may come from the host's own
    # boot config (e.g. rdblacklist=nouveau in GRUB_CMDLINE_LINUX, as vGPU guides advise), and a
    # `false` here would make the planner try to remove it from a fleet it is adopting.
    block: dict[str, Any] = {"iommu": True} if iommu else {}
    if passthrough:
        block["iommuPassthrough"] = True
    if nouveau:
        block["blacklistNouveau"] = True
    if stub:
        block["pciStub"] = stub
    if extra:
        block["extraArgs"] = extra
    return block


def is_gpu_host(host: Host) -> bool:
    return any(d.mdev_types or d.vendor_id == NVIDIA_VENDOR_ID for d in host.devices)


def waits_for_reboot(host: Host) -> bool:
    """True when the engine's custom args are configured but not in the booted line."""
    if host.reported_kernel_cmdline is None:
        return False
    booted = {t.raw for t in tokenize(host.reported_kernel_cmdline)}
    return any(t.raw not in booted for t in tokenize(host.custom_kernel_cmdline))


def host_settings(host: Host) -> dict[str, Any]:
    """The per-host settings a profile carries (everything but the selector and name).

    A host whose configured args were never booted gets `rollout.reboot: never`: adopting a
    fleet must not reboot anything by itself; the plan lists the host as waiting for a reboot.
    """
    kernel = kernel_from_cmdline(host.custom_kernel_cmdline)
    settings: dict[str, Any] = {"kernel": kernel} if kernel else {}
    if any(d.mdev_types for d in host.devices) and host.vgpu_placement:
        settings["vgpu"] = {"placement": host.vgpu_placement}
    if waits_for_reboot(host):
        settings["rollout"] = {"reboot": "never"}
    return settings


def _profile_name(cluster: str, index: int, used: set[str]) -> str:
    base = _NAME_UNSAFE.sub("-", cluster).strip("-._") or "hosts"
    name = f"{base}-{index}"
    while name in used:
        index += 1
        name = f"{base}-{index}"
    used.add(name)
    return name


def export_profiles(hosts: tuple[Host, ...]) -> list[dict[str, Any]]:
    """One profile per (cluster, identical settings), for hosts with GPUs or managed args."""
    groups: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    for host in hosts:
        if not (is_gpu_host(host) or host.custom_kernel_cmdline.strip()):
            continue
        settings = host_settings(host)
        key = (host.cluster, repr(sorted(settings.items())))
        groups.setdefault(key, (settings, []))[1].append(host.name)
    profiles = []
    used: set[str] = set()
    per_cluster: Counter[str] = Counter()
    for (cluster, _), (settings, names) in sorted(groups.items(), key=lambda kv: (kv[0][0],
                                                                                 kv[1][1][0])):
        per_cluster[cluster] += 1
        profiles.append({"name": _profile_name(cluster, per_cluster[cluster], used),
                         "selector": {"cluster": cluster, "names": sorted(names)},
                         **settings})
    return profiles


def _legacy_vgpu(value: str) -> tuple[list[str], bool]:
    """`[nodisplay,]type[,type...]` (the pre-4.5 custom property) -> (types, nodisplay)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    nodisplay = bool(parts) and parts[0] == "nodisplay"
    return (parts[1:] if nodisplay else parts), nodisplay


def export_vm(vm: Vm) -> dict[str, Any] | None:
    """The spec entry of one VM, or None when it uses no GPU."""
    entry: dict[str, Any] = {"name": vm.name}
    devices = sorted({d.name for d in vm.host_devices if not d.placeholder})
    if devices:
        hosts = {d.host for d in vm.host_devices if not d.placeholder and d.host}
        host = vm.pinned_hosts[0] if len(vm.pinned_hosts) == 1 else (
            next(iter(hosts)) if len(hosts) == 1 else None)
        if host is None:
            _log.warning("export.passthrough_skipped", vm=vm.name,
                         reason="devices without a single pinned host")
        else:
            entry["passthrough"] = {"host": host, "devices": devices}
    if vm.mediated_devices:
        counts = Counter(m.mdev_type for m in vm.mediated_devices)
        mdev_type, instances = counts.most_common(1)[0]
        if len(counts) > 1:
            _log.warning("export.mixed_vgpu_types", vm=vm.name, types=sorted(counts),
                         kept=mdev_type)
        same = [m for m in vm.mediated_devices if m.mdev_type == mdev_type]
        vgpu: dict[str, Any] = {"type": mdev_type, "instances": instances,
                                "secondaryDisplay": "none" if same[0].nodisplay else "vnc"}
        if same[0].driver_params:
            vgpu["driverParams"] = same[0].driver_params
        entry["vgpu"] = vgpu
    elif vm.legacy_mdev_property:
        types_, nodisplay = _legacy_vgpu(vm.legacy_mdev_property)
        if types_:
            entry["vgpu"] = {"type": types_[0], "instances": types_.count(types_[0]),
                             "secondaryDisplay": "none" if nodisplay else "vnc"}
    return entry if len(entry) > 1 else None


def export_spec(observed: Observed, engine_block: Mapping[str, Any],
                host_access: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The spec document (plain data) for `observed`, reusing the input spec's engine block."""
    spec: dict[str, Any] = {"apiVersion": API_VERSION, "engine": dict(engine_block)}
    if host_access:
        spec["hostAccess"] = dict(host_access)
    profiles = export_profiles(observed.hosts)
    if profiles:
        spec["hostProfiles"] = profiles
    vms = [e for e in (export_vm(v) for v in observed.vms) if e is not None]
    if vms:
        spec["vms"] = vms
    return spec


def dump_spec(spec: Mapping[str, Any], header: str | None = None) -> str:
    text = yaml.safe_dump(dict(spec), sort_keys=False, default_flow_style=False, width=100)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return text
