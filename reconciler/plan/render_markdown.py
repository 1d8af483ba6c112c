"""Markdown for a pull-request comment: a summary table first, details in <details> sections, cut
to GitHub's comment limit (65,536 characters) with a note saying what was cut."""
from __future__ import annotations

from reconciler.model.vocab import DriftStatus
from reconciler.plan.render_text import action_lines, drift_lines, warning_lines
from reconciler.plan.result import DriftItem, Plan, PlanWarning

GITHUB_COMMENT_LIMIT = 65_536
_RESERVE = 600          # room for closing tags and the "cut" note
HEAD_BLOCKERS = 20      # blockers listed above the details; a longer list would crowd out the table


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _names(names: tuple[str, ...], limit: int = 20) -> str:
    if not names:
        return "0"
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return f"{len(names)} ({shown}{more})"


def _head(plan: Plan) -> list[str]:
    s = plan.summary
    icon = "⛔" if s.blockers else ("✅" if not s.changes else "📝")
    lines = [f"### {icon} gpu-reconciler plan", "", s.line(), "",
             "| | |", "|---|---|",
             f"| Hosts rebooting | {_cell(_names(s.hosts_to_reboot))} |",
             f"| VMs restarting | {_cell(_names(s.vms_to_restart))} |",
             f"| Changes | {s.changes} |",
             f"| Blockers | {s.blockers} |",
             f"| Pending / drift / unmanaged | {s.pending} / {s.drift} / {s.unmanaged} |"]
    if s.warnings:
        lines.append(f"| Warnings | {s.warnings} |")
    if s.seats:
        lines += ["", "| vGPU type | seats in use before | after | configured (running or down) |",
                  "|---|---:|---:|---:|"]
        lines += [f"| `{_cell(x.mdev_type)}` | {x.before} | {x.after} | "
                  f"{x.configured if x.configured is not None else ''} |" for x in s.seats]
    blockers = plan.blockers
    if blockers:
        lines += ["", "**Blockers**", ""]
        lines += [_blocker(b) for b in blockers[:HEAD_BLOCKERS]]
        if len(blockers) > HEAD_BLOCKERS:
            lines.append(f"- ... and {len(blockers) - HEAD_BLOCKERS} more (all in the details "
                         "below)")
    if plan.warnings:
        lines += ["", "**Warnings** (existing risks this plan does not change)", ""]
        lines += [_blocker(w) for w in plan.warnings[:HEAD_BLOCKERS]]
        if len(plan.warnings) > HEAD_BLOCKERS:
            lines.append(f"- ... and {len(plan.warnings) - HEAD_BLOCKERS} more (all in the "
                         "details below)")
    return lines


def _blocker(b: DriftItem | PlanWarning) -> str:
    return (f"- `{_cell(b.key)}`: {_cell(b.message)}"
            + (f" ({_cell(b.location)})" if b.location else ""))


def _sections(plan: Plan) -> list[tuple[str, list[str]]]:
    sections: list[tuple[str, list[str]]] = []
    if len(plan.blockers) > HEAD_BLOCKERS:
        sections.append((f"All blockers ({len(plan.blockers)})",
                         drift_lines(plan.blockers)))
    actions = action_lines(plan)
    if actions:
        sections.append((f"Actions ({len(plan.actions)})", actions))
    others = tuple(d for d in plan.drift if d.status is not DriftStatus.BLOCKED)
    if others:
        sections.append((f"Pending, drift and unmanaged ({len(others)})", drift_lines(others)))
    if len(plan.warnings) > HEAD_BLOCKERS:
        sections.append((f"All warnings ({len(plan.warnings)})",
                         warning_lines(plan.warnings)[1:]))
    if plan.notes:
        sections.append((f"Notes ({len(plan.notes)})",
                         [f"- {n.key}: {n.message}" for n in plan.notes]))
    if plan.waves:
        sections.append((f"Rollout waves ({len(plan.waves)})",
                         [f"wave {w.number}: {', '.join(w.hosts)}" for w in plan.waves]))
    return sections


def render_markdown(plan: Plan, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    out = "\n".join(_head(plan)) + "\n"
    sections = _sections(plan)
    total_lines = sum(len(body) for _, body in sections)
    written = 0
    cut = False
    for title, body in sections:
        opening = f"\n<details><summary>{title}</summary>\n\n```text\n"
        closing = "```\n\n</details>\n"
        if len(out) + len(opening) + len(closing) + _RESERVE > limit:
            cut = True
            break
        out += opening
        for line in body:
            if len(out) + len(line) + 1 + len(closing) + _RESERVE > limit:
                cut = True
                break
            out += line.replace("```", "'''") + "\n"
            written += 1
        out += closing
        if cut:
            break
    if cut:
        out += (f"\n> **Cut to fit GitHub's {limit:,}-character comment limit:** "
                f"{total_lines - written} of {total_lines} detail lines are not shown. "
                "The summary above is complete; run `reconcile plan` for the full plan.\n")
    return out
