"""Host phase: per-host desired settings -> kernel, modprobe and placement actions, host cycles,
and the rollout waves that order them."""
from __future__ import annotations

from dataclasses import replace

from reconciler.model.cmdline import persisted_args, tokenize
from reconciler.model.facts import Host, Vm
from reconciler.plan import checks
from reconciler.plan.actions import (Action, Disruption, HostCycle, RegenerateInitramfs,
                                     SetKernelCmdline, SetVgpuPlacement, Verification,
                                     WriteModprobeFile)
from reconciler.plan.expand import MODPROBE_PATH, HostDesired, expand_host, render_modprobe
from reconciler.plan.fingerprint import sha256_text
from reconciler.plan.kernel import edit_cmdline, unmet, unwanted_tokens, wants_for
from reconciler.plan.result import DriftItem, Note, Wave
from reconciler.plan.state import HostWork, PlanState, is_down
from reconciler.plan.waves import CycleRequest, plan_waves

CYCLE_STATES = frozenset({"up", "maintenance"})


def _norm_module(name: str) -> str:
    return name.replace("-", "_")


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


class HostPlanning(PlanState):
    """Plans each managed host, then schedules the host cycles into waves."""

    def plan_hosts(self) -> None:
        profiles = self.desired.host_profiles
        vgpu_clusters = {self.vms[v.name].cluster for v in self.desired.vms
                         if v.vgpu is not None and v.name in self.vms}
        for name in sorted(self.hosts):
            host = self.hosts[name]
            hd = expand_host(host, profiles) if profiles else None
            if hd is None:
                continue
            self.host_desired[name] = hd
            self._plan_host(host, hd, host.cluster in vgpu_clusters)

    def _plan_host(self, host: Host, hd: HostDesired, vgpu_in_cluster: bool) -> None:
        key = f"host:{host.name}"
        reason, status = self._classify(key, hd)
        loc = hd.location
        blockers = list(hd.conflicts)
        probe = self._probe(host.name)
        parts: list[str] = []
        work = HostWork(host, hd, reason)
        needs_boot: list[str] = []
        expect_args: tuple[str, ...] = ()
        expect_absent: tuple[str, ...] = ()
        gone_tokens: tuple[str, ...] = ()
        cmdline_edit = False
        kernel_unbooted = False

        if hd.kernel is not None:
            cluster = self.clusters.get(host.cluster)
            wants = wants_for(hd.kernel, host.cpu_vendor, cluster.architecture if cluster else None,
                              host.cpu_vendor_note)
            if wants.problem:
                blockers.append(f"host {host.name}: {wants.problem}")
            else:
                new = edit_cmdline(host.custom_kernel_cmdline, wants.wants)
                if new != host.custom_kernel_cmdline:
                    cmdline_edit = True
                    parts.append(f"engine kernel cmdline {host.custom_kernel_cmdline!r} -> {new!r}")
                    work.config.append(SetKernelCmdline(
                        target=key, before=host.custom_kernel_cmdline, after=new,
                        disruption=Disruption.HOST_REBOOT, reason=reason,
                        description=f"set engine custom kernel cmdline to {new!r}",
                        verify=(Verification(key, "custom_kernel_cmdline", "eq", new),),
                        cmdline=new))
                booted = (probe.proc_cmdline if probe is not None and probe.ok
                          and probe.proc_cmdline is not None else host.reported_kernel_cmdline)
                if booted is None:
                    self.notes.append(Note(key, "booted kernel cmdline unknown (not reported)"))
                    missing = () if not cmdline_edit else wants.add_tokens
                else:
                    missing = unmet(booted, wants.wants)
                if missing:
                    needs_boot.append("booted cmdline needs " + " ".join(missing))
                    if not cmdline_edit:
                        kernel_unbooted = True
                        parts.append("kernel args configured but not booted: " + " ".join(missing))
                elif cmdline_edit:
                    needs_boot.append("engine cmdline changes")
                expect_args = wants.add_tokens
                expect_absent = wants.absent_keys
                gone_tokens = unwanted_tokens(booted, wants.wants)
                stuck = _engine_cannot_remove(host, persisted_args(probe), gone_tokens)
                if stuck:
                    them = "it" if len(stuck) == 1 else "them"
                    blockers.append(
                        f"host {host.name}: {' '.join(stuck)} must go, but the host's persisted "
                        "boot args carry it and the engine's custom cmdline does not, so a "
                        f"reinstall and reboot would not remove {them} (the engine removes only "
                        "arguments it applied); remove it on the host (grubby "
                        f"--update-kernel=ALL --remove-args=\"{' '.join(stuck)}\") or stop "
                        "managing that argument")

        modules_absent: tuple[str, ...] = ()
        if hd.modprobe is not None:
            content = render_modprobe(hd.modprobe)
            blacklist = sorted({_norm_module(m) for m in hd.modprobe.blacklist})
            modules_absent = tuple(blacklist)
            if probe is None or not probe.ok:
                why = probe.reason if probe is not None and probe.reason else "host not probed"
                self.notes.append(Note(key, f"modprobe file not checked ({why})"))
            else:
                current = next((f for f in probe.modprobe_files if f.path == MODPROBE_PATH), None)
                differs = current is None or current.sha256 != sha256_text(content)
                lacking = ([] if probe.initramfs_blacklist is None else
                           [m for m in blacklist if m not in probe.initramfs_blacklist])
                loaded = [m for m in blacklist if m in probe.loaded_modules]
                # A new file and initramfs only need a reboot to unload a module that is loaded
                # now; with none loaded (e.g. already kept off by a kernel argument) they take
                # effect without touching the running host.
                file_disruption = Disruption.HOST_REBOOT if loaded else Disruption.NONE
                if differs or lacking:
                    why = ("missing" if current is None else "differs") if differs else (
                        "initramfs lacks blacklist " + ", ".join(lacking))
                    parts.append(f"modprobe file {MODPROBE_PATH}: {why}")
                    if loaded:
                        needs_boot.append("modprobe/initramfs changes")
                    work.config.append(WriteModprobeFile(
                        target=key, before=current.sha256 if current else None,
                        after=sha256_text(content), disruption=file_disruption,
                        reason=reason, description=f"write {MODPROBE_PATH}",
                        verify=(Verification(key, f"probe.modprobe_files[{MODPROBE_PATH}].sha256",
                                             "eq", sha256_text(content)),),
                        path=MODPROBE_PATH, content=content))
                    work.config.append(RegenerateInitramfs(
                        target=key, before=None, after=None, disruption=file_disruption,
                        reason=reason, description="regenerate the initramfs (dracut --force)",
                        verify=tuple(Verification(key, "probe.initramfs_blacklist", "contains", m)
                                     for m in blacklist)))
                if loaded and not (differs or lacking):
                    needs_boot.append("blacklisted module loaded: " + ", ".join(loaded))
                    parts.append("blacklisted module(s) still loaded: " + ", ".join(loaded))

        if hd.vgpu_placement is not None and hd.vgpu_placement != host.vgpu_placement:
            parts.append(f"vGPU placement {host.vgpu_placement} -> {hd.vgpu_placement}")
            work.config.append(SetVgpuPlacement(
                target=key, before=host.vgpu_placement, after=hd.vgpu_placement,
                disruption=Disruption.NONE, reason=reason,
                description=f"set vGPU placement to {hd.vgpu_placement}",
                verify=(Verification(key, "vgpu_placement", "eq", hd.vgpu_placement),),
                placement=hd.vgpu_placement))

        blocker, note = checks.vgpu_manager_problem(hd.vgpu_manager, probe)
        if blocker:
            blockers.append(f"host {host.name}: {blocker}")
        if note:
            self.notes.append(Note(key, note))
        if hd.vgpu_manager != "ignore" or hd.vgpu_placement is not None or vgpu_in_cluster:
            vfs = checks.per_vf_interface(probe)
            if vfs:
                blockers.append(
                    f"host {host.name}: GPU functions {', '.join(vfs)} use the per-VF vGPU "
                    "interface (creatable_vgpu_types, no mdev bus), which the engine cannot drive; "
                    "their vGPUs cannot be managed here")

        if needs_boot and host.status not in CYCLE_STATES and hd.reboot == "allowed":
            blockers.append(f"host {host.name} is {host.status}; a host cycle needs it up or in "
                            "maintenance")
        for msg in blockers:
            self._block(key, msg, loc)
        if blockers:
            return

        if needs_boot:
            if hd.reboot == "never":
                parts.append("needs a reboot (" + "; ".join(needs_boot) +
                             "), but rollout.reboot is never")
            else:
                held = self._pinned_vms(host)
                waiting = [v for v in held if not self._may_stop(v)]
                if waiting:
                    parts.append("held: VM(s) " + ", ".join(v.name for v in waiting) +
                                 " run pinned here and cannot migrate; stop them or allow "
                                 "restarts (restart: allowed) to let the host reboot")
                else:
                    work.stop_vms = held
                    steps = ("deactivate", "install", "activate", "verify")
                    cycle_note: str | None
                    if cmdline_edit:
                        cycle_note = None
                    elif kernel_unbooted:
                        cycle_note = "configured but not booted"
                    else:
                        cycle_note = "boots the new initramfs / unloads blacklisted modules"
                    desc = ("host cycle: " + " -> ".join(steps)
                            + (f" ({cycle_note})" if cycle_note else ""))
                    verify = [Verification(key, "status", "eq", "up"),
                              Verification(key, "reinstallation_required", "eq", False)]
                    verify += [Verification(key, "booted_cmdline", "contains", t)
                               for t in expect_args]
                    verify += [Verification(key, "booted_cmdline", "not-contains", t)
                               for t in gone_tokens]
                    verify += [Verification(key, "probe.loaded_modules", "not-contains", m)
                               for m in modules_absent]
                    work.cycle = HostCycle(
                        target=key, before=host.status, after="up",
                        disruption=Disruption.HOST_REBOOT, reason=reason, description=desc,
                        verify=tuple(verify), note=cycle_note, steps=steps, expect_args=expect_args,
                        expect_absent=expect_absent, expect_modules_absent=modules_absent,
                        cmdline_edit=cmdline_edit)
        if parts:
            self.drift.append(DriftItem(key, status, "; ".join(parts), loc))  # type: ignore[arg-type]
        if work.config or work.cycle:
            self.host_work[host.name] = work
            self.depends.add(key)

    def _pinned_vms(self, host: Host) -> list[Vm]:
        """Running VMs on `host` that cannot migrate away (pinned, holding host devices, or
        running vGPUs: the engine does not live-migrate a VM with mediated devices)."""
        out = []
        for vm in self.vms_on_host.get(host.name, ()):
            if is_down(vm):
                continue
            if vm.affinity == "pinned" or any(not d.placeholder for d in vm.host_devices) \
                    or vm.mediated_devices:
                out.append(vm)
        return sorted(out, key=lambda v: v.name)

    def _may_stop(self, vm: Vm) -> bool:
        spec = self.desired_vms.get(vm.name)
        return spec is not None and spec.restart == "allowed"

    def schedule_cycles(self) -> tuple[tuple[Wave, ...], list[Action]]:
        requests = [CycleRequest(w.host.name, w.host.cluster, w.host.status == "up",
                                 w.desired.max_unavailable)
                    for w in self.host_work.values() if w.cycle is not None]
        waves = plan_waves(sorted(requests, key=lambda r: r.host), self.hosts_by_cluster)
        for host, why in sorted(waves.held.items()):
            work = self.host_work[host]
            work.cycle = None
            work.stop_vms = []
            self._block(f"host:{host}", why, work.desired.location)
        ordered: list[Action] = []
        for name in sorted(self.host_work):
            work = self.host_work[name]
            if work.cycle is None:
                ordered.extend(work.config)
        out_waves = []
        for number, hosts in enumerate(waves.waves, start=1):
            out_waves.append(Wave(number, hosts))
            for name in hosts:
                work = self.host_work[name]
                self.depends.update(f"vm:{v.name}" for v in self.vms_on_host.get(name, ()))
                for vm in work.stop_vms:
                    self.stopped_for_cycle[vm.name] = name
                    ordered.append(self._stop(vm, self.desired_vms[vm.name],
                                              f"so that host {name} can reboot", number))
                ordered.extend(replace(a, wave=number) for a in work.config)
                assert work.cycle is not None
                ordered.append(replace(work.cycle, wave=number))
        return tuple(out_waves), ordered
