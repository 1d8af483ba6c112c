"""A host's modprobe.d file: our file and the initramfs that carries it, blacklisted modules
still loaded, and our file removed when no profile of the host asks for one any more (the file is
its own ownership record: every line in it is ours; no other file is touched)."""
from __future__ import annotations

from reconciler.model.facts import ModprobeFile, ProbeFacts
from reconciler.model.modprobe import module_name
from reconciler.plan.actions import (Disruption, Reason, RegenerateInitramfs,
                                     RemoveModprobeFile, Verification, WriteModprobeFile)
from reconciler.plan.expand import MODPROBE_PATH, render_modprobe
from reconciler.plan.fingerprint import sha256_text
from reconciler.plan.hosts.changes import NO_CHANGES, HostChanges
from reconciler.spec.model import ModprobeSpec


def modprobe_changes(key: str, spec: ModprobeSpec, probe: ProbeFacts | None,
                     reason: Reason) -> HostChanges:
    blacklist = tuple(sorted({module_name(m) for m in spec.blacklist}))
    if probe is None or not probe.ok:
        why = probe.reason if probe is not None and probe.reason else "host not probed"
        return HostChanges(notes=(f"modprobe file not checked ({why})",),
                           modules_absent=blacklist)
    content = render_modprobe(spec)
    current = next((f for f in probe.modprobe_files if f.path == MODPROBE_PATH), None)
    differs = current is None or current.sha256 != sha256_text(content)
    lacking = ([] if probe.initramfs_blacklist is None else
               [m for m in blacklist if m not in probe.initramfs_blacklist])
    loaded = [m for m in blacklist if m in probe.loaded_modules]
    if not (differs or lacking):
        if not loaded:
            return HostChanges(modules_absent=blacklist)
        return HostChanges(
            needs_boot=("blacklisted module loaded: " + ", ".join(loaded),),
            differences=("blacklisted module(s) still loaded: " + ", ".join(loaded),),
            modules_absent=blacklist)
    why = ("missing" if current is None else "differs") if differs else (
        "initramfs lacks blacklist " + ", ".join(lacking))
    return HostChanges(
        actions=_write_and_regenerate(key, current, content, blacklist, bool(loaded), reason),
        differences=(f"modprobe file {MODPROBE_PATH}: {why}",),
        needs_boot=("modprobe/initramfs changes",) if loaded else (),
        modules_absent=blacklist)


def _write_and_regenerate(key: str, current: ModprobeFile | None, content: str,
                          blacklist: tuple[str, ...], loaded: bool,
                          reason: Reason) -> tuple[WriteModprobeFile, RegenerateInitramfs]:
    # A new file and initramfs only need a reboot to unload a module that is loaded now; with none
    # loaded (e.g. already kept off by a kernel argument) they take effect without touching the
    # running host.
    disruption = Disruption.HOST_REBOOT if loaded else Disruption.NONE
    digest = sha256_text(content)
    return (
        WriteModprobeFile(
            target=key, before=current.sha256 if current else None, after=digest,
            disruption=disruption, reason=reason, description=f"write {MODPROBE_PATH}",
            verify=(Verification(key, f"probe.modprobe_files[{MODPROBE_PATH}].sha256", "eq",
                                 digest),),
            path=MODPROBE_PATH, content=content),
        RegenerateInitramfs(
            target=key, before=None, after=None, disruption=disruption, reason=reason,
            description="regenerate the initramfs (dracut --force)",
            verify=tuple(Verification(key, "probe.initramfs_blacklist", "contains", m)
                         for m in blacklist)))


def modprobe_removal(key: str, probe: ProbeFacts | None, reason: Reason) -> HostChanges:
    """Our file on a host whose profiles no longer ask for one: remove it (a backup is kept) and
    rebuild the initramfs without it. Nothing changes on the running host; the next boot reads
    what the other modprobe.d files say."""
    if probe is None or not probe.ok:
        return NO_CHANGES
    current = next((f for f in probe.modprobe_files if f.path == MODPROBE_PATH), None)
    if current is None:
        return NO_CHANGES
    return HostChanges(
        actions=(
            RemoveModprobeFile(
                target=key, before=current.sha256, after=None, reason=reason,
                description=f"remove {MODPROBE_PATH} (written by gpu-reconciler; no profile of "
                            "this host asks for it any more)",
                verify=(Verification(key, "probe.modprobe_files", "not-contains",
                                     MODPROBE_PATH),),
                path=MODPROBE_PATH),
            RegenerateInitramfs(
                target=key, before=None, after=None, disruption=Disruption.NONE, reason=reason,
                description="regenerate the initramfs without our modprobe file (dracut --force)")),
        differences=(f"remove our modprobe file {MODPROBE_PATH}: no longer in the spec",))
