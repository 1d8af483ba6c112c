"""Terminal rendering: actions grouped by host and VM with + ~ - markers, then the drift items by
status (blocked, drift, pending, unmanaged: DriftStatus's order), warnings and notes, ending with the
one-line summary.

Colour only when asked (`use_color` decides for a stream: a TTY and no NO_COLOR).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from reconciler.log import use_color as log_use_color
from reconciler.model.vocab import DriftStatus
from reconciler.plan.actions import Action
from reconciler.plan.result import DriftItem, Plan, PlanWarning

_COLORS = {"+": "32", "-": "31", "~": "33", "!": "1;31", "warn": "33", "head": "1", "dim": "2"}


def use_color(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """A terminal and no NO_COLOR: the one rule for plans, logs and the apply progress."""
    return log_use_color(stream, environ)


class _Paint:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, style: str, text: str) -> str:
        if not self.color:
            return text
        return f"\x1b[{_COLORS[style]}m{text}\x1b[0m"


def _header(action: Action) -> str:
    kind, name = action.target.split(":", 1)
    title = f"{'Host' if kind == 'host' else 'VM'} {name}"
    if action.wave is not None:
        title += f" (wave {action.wave})"
    return title + ":"


def action_lines(plan: Plan, color: bool = False) -> list[str]:
    paint = _Paint(color)
    lines: list[str] = []
    group = None
    for action in plan.actions:
        head = _header(action)
        if head != group:
            if lines:
                lines.append("")
            lines.append(paint("head", head))
            group = head
        mark = action.marker
        tail = f"[{action.disruption.value}, {action.reason.value}]"
        lines.append(f"  {paint(mark, mark)} {action.kind}: {action.description} "
                     f"{paint('dim', tail)}")
        if action.before != action.after:
            if action.kind not in ("write-modprobe-file",):
                lines.append(f"      {_short(action.before)} -> {_short(action.after)}")
        for gone in getattr(action, "removes_owned", ()):
            lines.append(f"      {paint('-', '-')} {gone} (written by gpu-reconciler; no longer "
                         "in the spec)")
        if action.note:
            lines.append(f"      ({action.note})")
    return lines


def _short(value: str | None, width: int = 100) -> str:
    if value is None:
        return "(none)"
    text = repr(value) if value == "" or " " in value else value
    return text if len(text) <= width else text[:width - 3] + "..."


_TITLES = {DriftStatus.BLOCKED: "Blocked", DriftStatus.DRIFT: "Drift",
           DriftStatus.PENDING: "Pending",
           DriftStatus.UNMANAGED: "Unmanaged (reported, never removed)"}


def drift_lines(items: tuple[DriftItem, ...], color: bool = False) -> list[str]:
    paint = _Paint(color)
    lines: list[str] = []
    for status in DriftStatus:
        chosen = [d for d in items if d.status == status]
        if not chosen:
            continue
        if lines:
            lines.append("")
        lines.append(paint("head", f"{_TITLES[status]}:"))
        sign = paint("!", "!") if status is DriftStatus.BLOCKED else "*"
        for d in chosen:
            where = f" ({d.location})" if d.location else ""
            lines.append(f"  {sign} {d.key}: {d.message}{where}")
    return lines


def warning_lines(warnings: tuple[PlanWarning, ...], color: bool = False) -> list[str]:
    """Risky things the fleet already has that the plan leaves alone, each with its fix."""
    paint = _Paint(color)
    if not warnings:
        return []
    lines = [paint("head", "Warnings (existing risks this plan does not change):")]
    for w in warnings:
        where = f" ({w.location})" if w.location else ""
        lines.append(f"  {paint('warn', '!')} {w.key}: {w.message}{where}")
    return lines


def render_text(plan: Plan, color: bool = False) -> str:
    paint = _Paint(color)
    out: list[str] = []
    in_sync = not any(d.status.out_of_sync for d in plan.drift)
    out += action_lines(plan, color) or [
        "No changes. The fleet matches the spec." if in_sync else
        "No changes can be made now; see the items below."]
    drift = drift_lines(plan.drift, color)
    if drift:
        out += [""] + drift
    warnings = warning_lines(plan.warnings, color)
    if warnings:
        out += [""] + warnings
    if plan.notes:
        out += ["", paint("head", "Notes:")]
        out += [f"  - {n.key}: {n.message}" for n in plan.notes]
    if plan.summary.seats:
        out += ["", paint("head", "vGPU seats in use by running VMs (before -> after):")]
        out += [f"  {s.mdev_type}: {s.before} -> {s.after}"
                + (f" ({s.configured} configured)" if s.configured not in (None, s.after)
                   else "") for s in plan.summary.seats]
    out += ["", paint("head", plan.summary.line())]
    return "\n".join(out) + "\n"
