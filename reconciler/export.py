"""Observed state -> a spec that describes the fleet as it is, so a running fleet can be adopted.

Hosts are grouped into one profile per cluster and identical observed settings:

* the managed kernel arguments the engine's custom cmdline sets, only those (an argument it does
  not set is left unmanaged, never exported as "must be absent"), and only where the spec language
  can say exactly what is there: an argument whose key appears twice, that belongs to the other
  CPU vendor's IOMMU switch, or that a managed option would rewrite stays unmanaged (logged);
* our own modprobe.d file, as its `blacklist` / `options` lines (files of others stay theirs);
* the vGPU manager as the probe finds it (`required` when running, `absent` when not there);
* the vGPU placement of hosts that offer vGPU types.

VMs get their passthrough devices (non-placeholder host devices on their pinned host), their vGPUs
(type, count, display, driver params) and, for a SPICE-only VM whose vGPU has a display,
`console: keep`, so that adopting the fleet adds no console. Planning the exported spec against the
same fleet shows no changes: hosts whose engine args are configured but not booted get
`rollout.reboot: never`, so they show as pending a reboot instead of being cycled (remove it to let
the reconciler reboot them), and a risk the fleet already has (a passed-through GPU held by a host
driver) is a warning of the plan, not a blocker.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from reconciler.log import get_logger
from reconciler.model.cmdline import Token, tokenize
from reconciler.model.facts import CpuVendor, Host, ModprobeFile, Observed, ProbeFacts, Vm
from reconciler.model.ownership import OUR_MODPROBE_PATH as MODPROBE_PATH
from reconciler.spec.model import API_VERSION

_log = get_logger(__name__)

IOMMU_KEYS = ("intel_iommu", "amd_iommu")
PCI_STUB_KEY = "pci_stub.ids"
NOUVEAU_KEYS = ("rdblacklist", "rd.driver.blacklist", "modprobe.blacklist")
NVIDIA_VENDOR_ID = "10de"
VGPU_MODULE = "nvidia_vgpu_vfio"
# What the spec schema accepts as an extra kernel argument / a pci-stub id; anything else (quoted
# values, sub-vendor ids) cannot be expressed and is left unmanaged, with a warning.
_EXTRA_ARG = re.compile(r"^[A-Za-z0-9_.,:=+/@%][A-Za-z0-9_.,:=+/@%-]*$")
_PCI_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
_MODULE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPTION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*=[^\s\"'\\#;&|$`<>]+$")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class ExportNotes:
    """What the export could not carry over, for the header of the written spec."""

    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        if text not in self.lines:
            self.lines.append(text)


def kernel_from_cmdline(custom: str, vendor: CpuVendor | None = None,
                        notes: ExportNotes | None = None, host: str = "") -> dict[str, Any]:
    """The spec `kernel` block that the engine custom cmdline `custom` expresses exactly.

    `vendor` (the host's CPU vendor) decides which IOMMU switch is `iommu: true`; without it either
    one is taken. Arguments the block cannot say exactly (a key set twice, a value the schema
    refuses, one a managed option would rewrite) are left out: unmanaged, as found.
    """
    tokens = tokenize(custom)
    counts = Counter(t.key for t in tokens)
    block: dict[str, Any] = {}
    extra: list[Token] = []
    skipped: list[str] = []
    for tok in tokens:
        if counts[tok.key] > 1:
            skipped.append(tok.raw)              # a key set twice: no spec says exactly that
        elif tok.key in IOMMU_KEYS and tok.value == "on" and (
                vendor is None or tok.key == f"{vendor}_iommu"):
            block["iommu"] = True
        elif tok.key == "iommu" and tok.value == "pt":
            block["iommuPassthrough"] = True
        elif tok.key == "rdblacklist" and tok.value == "nouveau":
            block["blacklistNouveau"] = True
        elif tok.key == PCI_STUB_KEY and tok.value and all(
                _PCI_ID.match(i.lower()) for i in tok.value.split(",")) and len(
                set(i.lower() for i in tok.value.split(","))) == len(tok.value.split(",")):
            block["pciStub"] = [i.lower() for i in tok.value.split(",")]
        elif _EXTRA_ARG.match(tok.raw):
            extra.append(tok)
        else:
            skipped.append(tok.raw)
    kept = []
    for tok in extra:
        if _owned_by_block(tok, block):
            skipped.append(tok.raw)              # e.g. amd_iommu=off beside intel_iommu=on
        else:
            kept.append(tok.raw)
    if kept:
        block["extraArgs"] = kept
    if skipped:
        _log.warning("export.kernel_args_unmanaged", host=host, args=skipped,
                     reason="not expressible exactly as a kernel block; left as found")
        if notes is not None:
            notes.add(f"{host}: kernel args left unmanaged (no spec says exactly this): "
                      + " ".join(skipped))
    # Keys in the order the spec documents them.
    order = ("iommu", "iommuPassthrough", "blacklistNouveau", "pciStub", "extraArgs")
    return {k: block[k] for k in order if k in block}


def _owned_by_block(tok: Token, block: Mapping[str, Any]) -> bool:
    """True when a managed option of `block` governs `tok`'s key (validation refuses it there)."""
    if tok.key in IOMMU_KEYS and "iommu" in block:
        return True
    if tok.key == "iommu" and "iommuPassthrough" in block:
        return True
    if tok.key in NOUVEAU_KEYS and "blacklistNouveau" in block and \
            "nouveau" in (tok.value or "").split(","):
        return True
    return tok.key == PCI_STUB_KEY and "pciStub" in block


def is_gpu_host(host: Host) -> bool:
    return any(d.mdev_types or d.vendor_id == NVIDIA_VENDOR_ID for d in host.devices)


def waits_for_reboot(host: Host) -> bool:
    """True when the engine's custom args are configured but not in the booted line."""
    if host.reported_kernel_cmdline is None:
        return False
    booted = {t.raw for t in tokenize(host.reported_kernel_cmdline)}
    return any(t.raw not in booted for t in tokenize(host.custom_kernel_cmdline))


def modprobe_from_probe(probe: ProbeFacts | None, notes: ExportNotes | None = None,
                        host: str = "") -> dict[str, Any] | None:
    """Our own modprobe.d file as a spec `modprobe` block; None when the host has none."""
    if probe is None or not probe.ok:
        return None
    ours: ModprobeFile | None = next((f for f in probe.modprobe_files
                                      if f.path == MODPROBE_PATH), None)
    if ours is None:
        return None
    blacklist = sorted({m for m in ours.blacklist if _MODULE.match(m)})
    options: dict[str, list[str]] = {}
    for module, text in ours.options:
        opts = text.split()
        if not _MODULE.match(module) or not opts or not all(_OPTION.match(o) for o in opts):
            if notes is not None:
                notes.add(f"{host}: options {module} {text} in {MODPROBE_PATH} cannot be "
                          "written in a spec; a plan rewrites the file without it")
            continue
        options.setdefault(module, []).extend(opts)
    block: dict[str, Any] = {}
    if blacklist:
        block["blacklist"] = blacklist
    if options:
        block["options"] = {m: options[m] for m in sorted(options)}
    return block


def manager_policy(probe: ProbeFacts | None, notes: ExportNotes | None = None,
                   host: str = "") -> str | None:
    """`required` when the vGPU manager runs, `absent` when it is not there, None (ignore) when the
    host was not probed or the manager is half there (module without service, or the reverse)."""
    if probe is None or not probe.ok:
        return None
    loaded = VGPU_MODULE in probe.loaded_modules
    active = probe.vgpu_manager_service == "active"
    if loaded and active:
        return "required"
    if not loaded and probe.vgpu_manager_service in (None, "not-found", "inactive"):
        return "absent"
    if notes is not None:
        notes.add(f"{host}: the vGPU manager is half there (module {VGPU_MODULE} "
                  f"{'loaded' if loaded else 'not loaded'}, service "
                  f"{probe.vgpu_manager_service or 'not found'}); vgpu.manager left unmanaged")
    return None


def host_settings(host: Host, probe: ProbeFacts | None = None,
                  notes: ExportNotes | None = None) -> dict[str, Any]:
    """The per-host settings a profile carries (everything but the selector and name).

    A host whose configured args were never booted gets `rollout.reboot: never`: adopting a
    fleet must not reboot anything by itself; the plan lists the host as waiting for a reboot.
    """
    kernel = kernel_from_cmdline(host.custom_kernel_cmdline, host.cpu_vendor, notes, host.name)
    settings: dict[str, Any] = {"kernel": kernel} if kernel else {}
    modprobe = modprobe_from_probe(probe, notes, host.name)
    if modprobe is not None:
        settings["modprobe"] = modprobe
    vgpu: dict[str, Any] = {}
    manager = manager_policy(probe, notes, host.name) if is_gpu_host(host) else None
    if manager is not None:
        vgpu["manager"] = manager
    if any(d.mdev_types for d in host.devices) and host.vgpu_placement:
        vgpu["placement"] = host.vgpu_placement
    if vgpu:
        settings["vgpu"] = vgpu
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


def export_profiles(hosts: tuple[Host, ...], probes: Mapping[str, ProbeFacts] | None = None,
                    notes: ExportNotes | None = None) -> list[dict[str, Any]]:
    """One profile per (cluster, identical settings), for hosts with GPUs or managed args."""
    probes = probes or {}
    groups: dict[tuple[str, str], tuple[dict[str, Any], list[str]]] = {}
    for host in hosts:
        probe = probes.get(host.name)
        ours = probe is not None and any(f.path == MODPROBE_PATH for f in probe.modprobe_files)
        if not (is_gpu_host(host) or host.custom_kernel_cmdline.strip() or ours):
            continue
        settings = host_settings(host, probe, notes)
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


def export_vm(vm: Vm, notes: ExportNotes | None = None) -> dict[str, Any] | None:
    """The spec entry of one VM, or None when it uses no GPU the spec can describe."""
    entry: dict[str, Any] = {"name": vm.name}
    devices = sorted({d.name for d in vm.host_devices if not d.placeholder})
    if devices:
        hosts = {d.host for d in vm.host_devices if not d.placeholder and d.host}
        host = vm.pinned_hosts[0] if len(vm.pinned_hosts) == 1 else (
            next(iter(hosts)) if len(hosts) == 1 else None)
        if host is None:
            _log.warning("export.passthrough_skipped", vm=vm.name,
                         reason="devices without a single pinned host")
            if notes is not None:
                notes.add(f"{vm.name}: host devices without a single pinned host; left unmanaged")
        else:
            entry["passthrough"] = {"host": host, "devices": devices}
    if vm.mediated_devices:
        counts = Counter(m.mdev_type for m in vm.mediated_devices)
        mdev_type, instances = counts.most_common(1)[0]
        if len(counts) > 1:
            _log.warning("export.mixed_vgpu_types", vm=vm.name, types=sorted(counts),
                         kept=mdev_type)
            if notes is not None:
                notes.add(f"{vm.name}: vGPUs of several types ({', '.join(sorted(counts))}); "
                          f"the spec keeps {mdev_type}, so a plan removes the others")
        same = [m for m in vm.mediated_devices if m.mdev_type == mdev_type]
        display = "none" if same[0].nodisplay else "vnc"
        vgpu: dict[str, Any] = {"type": mdev_type, "instances": instances,
                                "secondaryDisplay": display}
        if same[0].driver_params:
            vgpu["driverParams"] = same[0].driver_params
        protocols = {g.protocol for g in vm.graphics}
        if display == "vnc" and "spice" in protocols and "vnc" not in protocols:
            vgpu["console"] = "keep"            # as it is: SPICE only, no VNC console added
        entry["vgpu"] = vgpu
    elif vm.legacy_mdev_property:
        # The pre-4.5 custom property: a spec vGPU on such a VM is a blocker until the property is
        # converted, so the VM stays unmanaged (reported as such) rather than blocking the plan.
        if notes is not None:
            notes.add(f"{vm.name}: vGPU as the pre-4.5 custom property mdev_type="
                      f"{vm.legacy_mdev_property}; left unmanaged (convert it, then export again)")
    return entry if len(entry) > 1 else None


def export_spec(observed: Observed, engine_block: Mapping[str, Any],
                host_access: Mapping[str, Any] | None = None,
                notes: ExportNotes | None = None) -> dict[str, Any]:
    """The spec document (plain data) for `observed`, reusing the input spec's engine block."""
    spec: dict[str, Any] = {"apiVersion": API_VERSION, "engine": dict(engine_block)}
    if host_access:
        spec["hostAccess"] = dict(host_access)
    probes = {p.host: p for p in observed.probes}
    profiles = export_profiles(observed.hosts, probes, notes)
    if profiles:
        spec["hostProfiles"] = profiles
    vms = [e for e in (export_vm(v, notes) for v in observed.vms) if e is not None]
    if vms:
        spec["vms"] = vms
    return spec


def dump_spec(spec: Mapping[str, Any], header: str | None = None) -> str:
    text = yaml.safe_dump(dict(spec), sort_keys=False, default_flow_style=False, width=100)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    return text
