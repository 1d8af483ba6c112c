"""`reconcile observe SPEC... [-o text|json] [--no-probe]`: what the engine and the hosts report.

Reads the fleet (the engine in a constant number of requests, the managed hosts probed in
parallel) and prints it."""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

from reconciler.commands.options import add_no_probe, add_output, add_specs, subcommand
from reconciler.model.cmdline import persisted_args
from reconciler.model.codec import to_plain
from reconciler.model.facts import Host, KernelArgView, Observed
from reconciler.spec.model import DesiredState, KernelSpec

GPU_VENDOR_IDS = frozenset({"10de", "1002"})     # NVIDIA, AMD/ATI


def register(subparsers: Any) -> None:
    parser = subcommand(subparsers, "observe", "show what the engine and the hosts report", __doc__, run)
    add_specs(parser)
    add_output(parser, {"text": "a summary", "json": "the facts (schemas/observed.schema.json)"})
    add_no_probe(parser)


def run(args: argparse.Namespace) -> int:
    from reconciler.commands.endpoints import fleet_session
    from reconciler.spec import load_desired

    desired = load_desired(args.specs)   # a SpecError is printed by the CLI, one issue a line
    with fleet_session(desired) as fleet:
        observed = fleet.observe(probe=not args.no_probe)
    if args.output == "json":
        data = observed_to_json(observed)
        views = kernel_views(desired, observed)
        if views:
            data["kernel_args"] = {host: [dict(to_plain(v), waiting_for_reboot=v.waiting_for_reboot)
                                          for v in host_views]
                                   for host, host_views in views.items()}
        json.dump(data, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(observed, desired))
    return 0


# ---- JSON ---------------------------------------------------------------------------------------

def observed_to_json(observed: Observed) -> dict[str, Any]:
    """Observed as plain JSON data (documented by schemas/observed.schema.json)."""
    data: dict[str, Any] = to_plain(observed)
    return data


# ---- text ---------------------------------------------------------------------------------------

def is_gpu(device: Any) -> bool:
    return bool(device.mdev_types) or device.vendor_id in GPU_VENDOR_IDS


def managed_kernel_args(kernel: KernelSpec, host: Host, architecture: str | None = None
                        ) -> dict[str, str | None]:
    """Managed argument key -> desired token (None: must be absent), as the planner reads the
    spec (plan.kernel.wants_for), so observe and plan never disagree about a host."""
    from reconciler.plan.kernel import wants_for

    wants = wants_for(kernel, host.cpu_vendor, architecture, host.cpu_vendor_note).wants
    return {w.key: w.token for w in wants}


def kernel_views(desired: DesiredState, observed: Observed) -> dict[str, tuple[KernelArgView, ...]]:
    """Three-way kernel argument view per managed host, from all the profiles selecting it
    merged as the planner merges them."""
    from reconciler.model.cmdline import kernel_arg_views
    from reconciler.plan.expand import expand_host

    arch = {c.name: c.architecture for c in observed.clusters}
    views: dict[str, tuple[KernelArgView, ...]] = {}
    for host in observed.hosts:
        merged = expand_host(host, desired.host_profiles)
        if merged is None or merged.kernel is None:
            continue
        probe = observed.probe(host.name)
        views[host.name] = kernel_arg_views(
            managed_kernel_args(merged.kernel, host, arch.get(host.cluster)),
            host.custom_kernel_cmdline, persisted_args(probe), host.reported_kernel_cmdline,
            probe.proc_cmdline if probe is not None and probe.ok else None)
    return views


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


def render_text(observed: Observed, desired: DesiredState | None = None) -> str:
    lines: list[str] = []
    gpu_count = sum(1 for h in observed.hosts for d in h.devices if is_gpu(d))
    lines.append(f"{len(observed.clusters)} clusters, {len(observed.hosts)} hosts, "
                 f"{gpu_count} GPU functions, {len(observed.vms)} VMs")
    free: dict[tuple[str, str], int] = defaultdict(int)
    holders: dict[tuple[str, str], list[str]] = defaultdict(list)
    for vm in observed.vms:
        for d in vm.host_devices:
            if d.host:
                holders[(d.host, d.name)].append(vm.name)
    lines.append("")
    lines.append("HOSTS")
    for host in observed.hosts:
        flags = [host.status, host.cpu_vendor or "vendor?",
                 f"passthrough {'on' if host.device_passthrough else 'off'}",
                 f"vgpu {host.vgpu_placement or '-'}"]
        if host.reinstallation_required:
            flags.append("reinstall required")
        lines.append(f"  {host.name} [{host.cluster}] " + ", ".join(flags))
        if host.cpu_vendor_note:
            lines.append(f"    note: {host.cpu_vendor_note}")
        for dev in (d for d in host.devices if is_gpu(d)):
            used = f" -> {dev.vm}" if dev.vm else ""
            # The engine names a device's VM only while it runs; down VMs still hold it.
            idle = [v for v in holders.get((host.name, dev.name), ()) if v != dev.vm]
            if idle:
                used += f" (attached to {', '.join(idle)}, not running)"
            lines.append(f"    {dev.name} {dev.pci_id or '?'} {dev.product_name or ''} "
                         f"driver={dev.driver or '-'} iommu={_or_dash(dev.iommu_group)}{used}".rstrip())
            for m in dev.mdev_types:
                free[(m.name, m.human_readable_name or "")] += m.available_instances
    lines.append("")
    lines.append("VMS USING GPUS")
    for vm in observed.vms:
        parts = []
        real = [d.name for d in vm.host_devices if not d.placeholder]
        if real:
            parts.append("passthrough " + " ".join(real))
        if vm.mediated_devices:
            kinds: dict[str, int] = defaultdict(int)
            for mdev in vm.mediated_devices:
                kinds[mdev.mdev_type] += 1
            parts.append("vgpu " + " ".join(f"{n}x{t}" for t, n in sorted(kinds.items())))
        if vm.legacy_mdev_property:
            parts.append(f"legacy mdev_type={vm.legacy_mdev_property}")
        if parts:
            where = f" on {vm.host}" if vm.host else ""
            consoles = ",".join(g.protocol for g in vm.graphics) or "none"
            lines.append(f"  {vm.name} {vm.status}{where}: {'; '.join(parts)} "
                         f"(console {consoles})")
    lines.append("")
    # A GPU lists every type it can still create; the counts of different types on one GPU are
    # alternatives, not a sum (consolidated placement fills one type per GPU).
    lines.append("FREE vGPU INSTANCES (per type; one GPU's types are alternatives)")
    for (name, human), count in sorted(free.items()):
        lines.append(f"  {name} {human}: {count}".replace("  :", ":"))
    if desired is not None:
        views = kernel_views(desired, observed)
        if views:
            lines.append("")
            lines.append("KERNEL ARGS (desired | configured | booted)")
            for host_name, host_views in views.items():
                lines.append(f"  {host_name}")
                for v in host_views:
                    mark = "  waiting for reboot" if v.waiting_for_reboot else ""
                    lines.append(f"    {v.key}: {v.desired or '(absent)'} | "
                                 f"{v.configured or '-'} | {v.booted or '-'}{mark}")
    failed = [p for p in observed.probes if not p.ok]
    if failed:
        lines.append("")
        lines.append("PROBE FAILURES")
        lines.extend(f"  {p.host}: {p.reason}" for p in failed)
    s = observed.stats
    lines.append("")
    lines.append(f"engine requests: {s.engine_requests}, hosts probed: {s.hosts_probed}, "
                 f"failures: {s.probe_failures}, seconds: {s.seconds:.2f}")
    return "\n".join(lines) + "\n"
