"""A host's kernel command line: the engine's custom cmdline to set, what the booted line still
lacks, arguments no host cycle could remove, and the arguments we wrote earlier (the host's
ownership record, reconciler/model/ownership.py) that the spec no longer asks for."""
from __future__ import annotations

from collections.abc import Sequence

from reconciler.model.cmdline import parse_token, persisted_args, tokenize
from reconciler.model.facts import Cluster, Host, ProbeFacts
from reconciler.model.ownership import owned_kernel_args
from reconciler.plan.actions import Reason, SetKernelCmdline, Verification
from reconciler.plan.hosts.changes import NO_CHANGES, HostChanges
from reconciler.plan.kernel import (KernelWant, KernelWants, edit_cmdline, tokens_of, unmet,
                                   unwanted_tokens, wants_for)
from reconciler.spec.model import KernelSpec


def booted_cmdline(host: Host, probe: ProbeFacts | None) -> str | None:
    """The host's own /proc/cmdline when probed, else what the engine reports."""
    if probe is not None and probe.ok and probe.proc_cmdline is not None:
        return probe.proc_cmdline
    return host.reported_kernel_cmdline


def cmdline_changes(host: Host, kernel: KernelSpec, cluster: Cluster | None,
                    probe: ProbeFacts | None, reason: Reason) -> HostChanges:
    wants = wants_for(kernel, host.cpu_vendor, cluster.architecture if cluster else None,
                      host.cpu_vendor_note)
    problem = wants.problem or _vendor_disagreement(kernel, host, cluster, probe)
    if problem:
        return HostChanges(blockers=(f"host {host.name}: {problem}",))
    # Arguments we wrote (the host's ownership record) that the spec no longer asks for go;
    # only those still on the engine's line: what is gone already needs no removing.
    dropped = ours_to_remove(host, wants)
    if dropped:
        wants = KernelWants(wants.wants + tuple(_removal(t) for t in dropped), wants.problem)
    edit = _engine_edit(host, wants, reason, dropped)
    booted = booted_cmdline(host, probe)
    boot = _boot_changes(booted, wants, cmdline_edit=bool(edit.actions))
    gone = unwanted_tokens(booted, wants.wants)
    stuck = _engine_cannot_remove(host, persisted_args(probe), gone)
    return HostChanges(
        actions=edit.actions, differences=edit.differences + boot.differences,
        needs_boot=boot.needs_boot, notes=boot.notes,
        blockers=(_stuck_message(host, stuck),) if stuck else (),
        expect_args=wants.add_tokens, expect_absent=wants.absent_keys, gone_tokens=gone,
        cmdline_edit=bool(edit.actions), kernel_unbooted=boot.kernel_unbooted)


def _vendor_disagreement(kernel: KernelSpec, host: Host, cluster: Cluster | None,
                         probe: ProbeFacts | None) -> str | None:
    """The host's own CPU vendor (/proc/cpuinfo) against the engine's: the IOMMU switch is the
    vendor's, so when the two disagree neither is trusted (shared/ovirt-api.md § 1.4)."""
    if kernel.iommu is not True or probe is None or not probe.ok:
        return None
    mine, engine = probe.cpu_vendor, host.cpu_vendor
    if mine not in ("intel", "amd") or engine not in ("intel", "amd") or mine == engine:
        return None
    source = (cluster.cpu_type if cluster and cluster.cpu_type else host.cpu_type) or "?"
    return (f"kernel.iommu: the engine's CPU type {source!r} says {engine} but the host's "
            f"/proc/cpuinfo says {probe.cpu_vendor_id or mine} ({mine}); {engine}_iommu would "
            "be the wrong switch; correct the cluster's CPU type (or move the host to a cluster "
            "of its vendor)")


def ours_to_remove(host: Host, wants: KernelWants) -> tuple[str, ...]:
    """Recorded-as-ours arguments on the engine's line that no want keeps."""
    present = tokens_of(host.custom_kernel_cmdline)
    out = []
    for raw in owned_kernel_args(host.comment):
        tok = parse_token(raw)
        if any(t.same_arg(tok) for t in present) and not any(w.is_desired(tok)
                                                             for w in wants.wants):
            out.append(raw)
    return tuple(out)


def _removal(raw: str) -> KernelWant:
    tok = parse_token(raw)
    return KernelWant(tok.key, None, value=tok.value)


def owned_after(before: str, after: str, owned: Sequence[str]) -> tuple[str, ...]:
    """The record after an edit: arguments we owned that stay, plus the ones the edit added."""
    was = {t.raw for t in tokenize(before)}
    mine = set(owned)
    return tuple(dict.fromkeys(t.raw for t in tokenize(after)
                               if t.raw in mine or t.raw not in was))


def _engine_edit(host: Host, wants: KernelWants, reason: Reason,
                 dropped: tuple[str, ...] = ()) -> HostChanges:
    """The engine's custom cmdline with our arguments edited in (every other token kept), and
    the record of the arguments we wrote, carried in the same action."""
    new = edit_cmdline(host.custom_kernel_cmdline, wants.wants)
    if new == host.custom_kernel_cmdline:
        return NO_CHANGES
    key = f"host:{host.name}"
    owned = owned_after(host.custom_kernel_cmdline, new, owned_kernel_args(host.comment))
    return HostChanges(
        differences=(f"engine kernel cmdline {host.custom_kernel_cmdline!r} -> {new!r}",)
        + ((f"remove kernel args we wrote that left the spec: {' '.join(dropped)}",)
           if dropped else ()),
        actions=(SetKernelCmdline(
            target=key, before=host.custom_kernel_cmdline, after=new, reason=reason,
            description=f"set engine custom kernel cmdline to {new!r}",
            verify=(Verification(key, "custom_kernel_cmdline", "eq", new),
                    Verification(key, "owned_kernel_args", "eq", " ".join(owned))),
            cmdline=new, owned=owned, removes_owned=dropped),))


def _boot_changes(booted: str | None, wants: KernelWants, cmdline_edit: bool) -> HostChanges:
    """Whether the booted line needs a cycle: it lacks a want, or the engine's line changes."""
    notes: tuple[str, ...] = ()
    if booted is None:
        notes = ("booted kernel cmdline unknown (not reported)",)
        missing = wants.add_tokens if cmdline_edit else ()
    else:
        missing = unmet(booted, wants.wants)
    if missing and not cmdline_edit:
        return HostChanges(
            notes=notes, needs_boot=("booted cmdline needs " + " ".join(missing),),
            differences=("kernel args configured but not booted: " + " ".join(missing),),
            kernel_unbooted=True)
    if missing:
        return HostChanges(notes=notes, needs_boot=("booted cmdline needs " + " ".join(missing),))
    if cmdline_edit:
        return HostChanges(notes=notes, needs_boot=("engine cmdline changes",))
    return HostChanges(notes=notes)


def _engine_cannot_remove(host: Host, persisted: str | None,
                          tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Unwanted booted tokens that a host cycle would bring back.

    The engine's reinstall runs `grubby --remove-args <what it applied last>` then `--args <custom
    cmdline>` (shared/ovirt-api.md § 1.1). With `reinstallation_required` false, what it applied
    last is the current custom cmdline, so a token on the host's persisted args that the custom
    cmdline lacks came from elsewhere and survives every cycle: cycling would loop forever.
    """
    if not tokens or persisted is None or host.reinstallation_required:
        return ()
    engine_set = {t.raw for t in tokens_of(host.custom_kernel_cmdline)}
    on_disk = {t.raw for t in tokens_of(persisted)}
    return tuple(t for t in tokens if t not in engine_set and t in on_disk)


def _stuck_message(host: Host, stuck: tuple[str, ...]) -> str:
    them = "it" if len(stuck) == 1 else "them"
    return (f"host {host.name}: {' '.join(stuck)} must go, but the host's persisted "
            "boot args carry it and the engine's custom cmdline does not, so a "
            f"reinstall and reboot would not remove {them} (the engine removes only "
            "arguments it applied); remove it on the host (grubby "
            f"--update-kernel=ALL --remove-args=\"{' '.join(stuck)}\") or stop "
            "managing that argument")
