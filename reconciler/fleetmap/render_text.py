"""The fleet map for a terminal: hosts and GPUs per cluster, then seats and headroom per type."""
from __future__ import annotations

from collections import Counter

from reconciler.fleetmap.model import FleetMap, Flag, GpuView, Headroom, HostView, TypeTotals

MODE_WORDS = {"passthrough": "passthrough", "vgpu": "vGPU", "idle": "idle",
              "host": "host driver", "unknown": "unknown"}


def _vms(g: GpuView) -> str:
    if not g.vms:
        return ""
    counts = Counter((v.name, v.status) for v in g.vms)
    parts = []
    for (name, status), n in counts.items():
        label = name if not name.startswith("?") else f"unknown VM (mdev {name[1:]})"
        parts.append(f"{label}{f' x{n}' if n > 1 else ''} ({status or '?'})")
    return ", ".join(parts)


def gpu_line(g: GpuView) -> str:
    if g.mode == "passthrough":
        what = f"passthrough -> {_vms(g)}"
    elif g.mode == "vgpu":
        seats = f"{g.seats_used}/{g.seats_total if g.seats_total is not None else '?'} seats"
        what = f"vGPU {g.vgpu_type} {g.vgpu_type_name or ''} {seats}: {_vms(g)}".replace("  ", " ")
    elif g.mode == "idle":
        what = "idle, vGPU-capable" if g.offers else f"idle ({g.driver or 'no driver'})"
    elif g.mode == "host":
        what = f"held by the host driver {g.driver}"
    else:
        what = "unknown"
    smi = ""
    if g.smi is not None:
        mem = (f"mem {g.smi.memory_used_mib}/{g.smi.memory_total_mib} MiB"
               if g.smi.memory_total_mib is not None else "")
        util = f"util {g.smi.utilization_percent}%" if g.smi.utilization_percent is not None else ""
        smi = "  [" + " ".join(x for x in (mem, util) if x) + "]"
    return f"    {g.address}  {g.model[:28]:<28}  {what}{smi}"


def _flag_lines(flags: tuple[Flag, ...], indent: str) -> list[str]:
    return [f"{indent}! {f.kind}: {f.message}" for f in flags]


def host_block(h: HostView) -> list[str]:
    vendor = h.cpu_vendor or "vendor?"
    if h.probe_cpu_vendor and h.probe_cpu_vendor != h.cpu_vendor:
        vendor += f" (host says {h.probe_cpu_vendor})"
    bits = [h.status, vendor, f"vgpu {h.vgpu_placement or '-'}",
            f"passthrough {'on' if h.passthrough_enabled else 'off'}"]
    if h.driver_version:
        bits.append(f"driver {h.driver_version}")
    if h.probe_note:
        bits.append(h.probe_note)
    lines = [f"  {h.name}  " + ", ".join(bits)]
    lines += _flag_lines(h.flags, "    ")
    for g in h.gpus:
        lines.append(gpu_line(g))
        lines += _flag_lines(g.flags, "      ")
    if h.vgpu_vms_unplaced:
        lines.append(f"    vGPU VMs here, GPU unknown (host not probed): "
                     f"{', '.join(h.vgpu_vms_unplaced)}")
    return lines


def _relevant(fm: FleetMap, instances_known: set[str]) -> set[str]:
    """Types worth a line: in use somewhere, or asked for by the spec."""
    return {t.type for t in fm.totals if t.used} | instances_known


def render_text(fm: FleetMap, spec_types: set[str] | frozenset[str] = frozenset()) -> str:
    gpus = [g for _, g in fm.gpus()]
    modes = Counter(g.mode for g in gpus)
    summary = ", ".join(f"{modes[m]} {MODE_WORDS[m]}" for m in MODE_WORDS if modes[m])
    lines = [f"FLEET GPU MAP: {len(fm.clusters)} clusters, {len(fm.hosts())} hosts, "
             f"{len(gpus)} GPUs ({summary or 'none'})"]
    if fm.generated_at:
        lines.append(f"observed {fm.generated_at}")
    for c in fm.clusters:
        lines.append("")
        lines.append(f"cluster {c.name}" + (f" ({c.cpu_type})" if c.cpu_type else ""))
        for h in c.hosts:
            lines += host_block(h)
    relevant = _relevant(fm, set(spec_types))
    rows: list[tuple[TypeTotals, Headroom | None]] = []
    room = {(r.cluster, r.type): r for r in fm.headroom}
    for t in fm.totals:
        if t.cluster is not None and t.type in relevant:
            rows.append((t, room.get((t.cluster, t.type))))
    lines.append("")
    lines.append("vGPU TYPES per cluster (free seats of idle GPUs are shared by every type they "
                 "offer)")
    header = (f"  {'cluster':<12} {'type':<11} {'name':<16} {'used':>4} {'free':>5} {'cap':>5} "
              f"{'GPUs run/idle':>13}  {'more VMs':<10} next")
    lines.append(header)
    for t, r in rows:
        more = f"{r.vms} (x{r.instances_per_vm})" if r else "-"
        nxt = f"{r.next[0].host} {r.next[0].gpu}" if r and r.next else "-"
        lines.append(f"  {t.cluster or '':<12} {t.type:<11} {(t.name or '')[:16]:<16} {t.used:>4} "
                     f"{t.free:>5} {t.capacity:>5} {f'{t.gpus_running}/{t.gpus_idle}':>13}  "
                     f"{more:<10} {nxt}")
    others = {t.type for t in fm.totals if t.cluster is not None} - relevant
    if others:
        lines.append(f"  ... and {len(others)} more types offered by idle GPUs (-o json lists them)")
    if not rows and not others:
        lines.append("  (no vGPU-capable GPU)")
    if fm.flags:
        lines.append("")
        lines.append("NOT ON A GPU")
        lines += [f"  ! {f.kind}: {f.key + ': ' if f.key else ''}{f.message}" for f in fm.flags]
    return "\n".join(lines) + "\n"
