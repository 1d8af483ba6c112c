"""A host's kernel command line: the engine's custom cmdline to set, what the booted line still
lacks, and arguments no host cycle could remove."""
from __future__ import annotations

from reconciler.model.cmdline import persisted_args, tokenize
from reconciler.model.facts import Cluster, Host, ProbeFacts
from reconciler.plan.actions import Reason, SetKernelCmdline
from reconciler.plan.hosts.changes import NO_CHANGES, HostChanges, one_setting
from reconciler.plan.kernel import KernelWants, edit_cmdline, unmet, unwanted_tokens, wants_for
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
    edit = _engine_edit(host, wants, reason)
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


def _engine_edit(host: Host, wants: KernelWants, reason: Reason) -> HostChanges:
    """The engine's custom cmdline with our arguments edited in (every other token kept)."""
    new = edit_cmdline(host.custom_kernel_cmdline, wants.wants)
    if new == host.custom_kernel_cmdline:
        return NO_CHANGES
    return one_setting(host.name, f"engine kernel cmdline {host.custom_kernel_cmdline!r} -> "
                                  f"{new!r}", SetKernelCmdline, "custom_kernel_cmdline",
                       host.custom_kernel_cmdline, new, reason,
                       f"set engine custom kernel cmdline to {new!r}", cmdline=new)


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
    engine_set = {t.raw for t in tokenize(host.custom_kernel_cmdline)}
    on_disk = {t.raw for t in tokenize(persisted)}
    return tuple(t for t in tokens if t not in engine_set and t in on_disk)


def _stuck_message(host: Host, stuck: tuple[str, ...]) -> str:
    them = "it" if len(stuck) == 1 else "them"
    return (f"host {host.name}: {' '.join(stuck)} must go, but the host's persisted "
            "boot args carry it and the engine's custom cmdline does not, so a "
            f"reinstall and reboot would not remove {them} (the engine removes only "
            "arguments it applied); remove it on the host (grubby "
            f"--update-kernel=ALL --remove-args=\"{' '.join(stuck)}\") or stop "
            "managing that argument")
