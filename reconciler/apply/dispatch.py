"""One plan action -> one operation, chosen by the action's type.

Actions stay pure data (plan/ knows nothing of engines or hosts); what each kind does when applied
is registered here, one function per action type, with `functools.singledispatch`. A new action
kind needs one more `@perform.register` function; a kind with none fails its step with a clear
message instead of doing something else. The host cycle itself is not performed here: its stages
are the host-cycle state machine (host_cycle.py).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import singledispatch
from pathlib import PurePosixPath

from reconciler.access.transport import Transport
from reconciler.apply import host_ops
from reconciler.apply.ops.protocol import EngineOps
from reconciler.apply.settings import NOT_IN_SPEC, Timeouts
from reconciler.errors import ApplyError
from reconciler.plan.actions import (Action, AddMediatedDevice, AttachHostDevice,
                                     DetachHostDevice, PinVm, RegenerateInitramfs,
                                     RemoveMediatedDevice, RemoveModprobeFile, SetConsoleVnc, SetKernelCmdline,
                                     SetVgpuPlacement, StartVm, StopVm, UpdateMediatedDevice,
                                     WriteModprobeFile)
from reconciler.plan.expand import MODPROBE_HEADER, MODPROBE_PATH
from reconciler.spec.values import kernel_cmdline_problems, modprobe_content_problems


@dataclass(frozen=True)
class ActionContext:
    """What performing an action needs: this thread's engine operations, the hosts'
    transports, how long waits may take, and the spec's restart policy per VM."""

    ops: EngineOps
    transports: Mapping[str, Transport]
    timeouts: Timeouts
    restart_policy: Callable[[str], str | None]

    def transport(self, action: Action) -> Transport:
        transport = self.transports.get(action.object_name)
        if transport is None:
            raise ApplyError(f"{action.target}: {action.kind} needs host access, and the spec "
                             "gives no way to reach this host (hostAccess)")
        return transport


@singledispatch
def perform(action: Action, ctx: ActionContext) -> str:
    """Carry out `action`; returns what was done, in a few words. Raises a ReconcilerError."""
    raise ApplyError(f"{action.target}: no executor step for action {action.kind!r}")


# ---- host files -------------------------------------------------------------------------------

@perform.register
def _write_modprobe_file(action: WriteModprobeFile, ctx: ActionContext) -> str:
    path = PurePosixPath(action.path)
    # Whatever a (saved, maybe edited) plan says, no host file but our own is ever written.
    if str(path) != MODPROBE_PATH:
        raise ApplyError(f"{action.target}: refusing to write {action.path}: only our "
                         f"own {MODPROBE_PATH} is ever written")
    problems = modprobe_content_problems(action.content, MODPROBE_HEADER)
    if problems:
        raise ApplyError(f"{action.target}: refusing to write {action.path}: "
                         + "; ".join(problems[:3]))
    result = host_ops.write_modprobe_file(ctx.transport(action), path.stem, action.content,
                                          backup=True)
    if not result.changed:
        return f"{result.path} already up to date"
    return f"{result.path} written" + (f" (backup {result.backup_path})"
                                       if result.backup_path else "")


@perform.register
def _remove_modprobe_file(action: RemoveModprobeFile, ctx: ActionContext) -> str:
    # Only ever our own file: whatever a (saved, maybe edited) plan says, no other is removed.
    path = PurePosixPath(action.path)
    if str(path) != MODPROBE_PATH:
        raise ApplyError(f"{action.target}: refusing to remove {action.path}: only our "
                         f"own {MODPROBE_PATH} is ever removed")
    result = host_ops.remove_modprobe_file(ctx.transport(action), path.stem, backup=True)
    if not result.changed:
        return f"{result.path} already absent"
    return f"{result.path} removed" + (f" (kept as {result.backup_path})"
                                       if result.backup_path else "")


@perform.register
def _regenerate_initramfs(action: RegenerateInitramfs, ctx: ActionContext) -> str:
    host_ops.regenerate_initramfs(ctx.transport(action))
    return "initramfs regenerated"


# ---- host fields ------------------------------------------------------------------------------

@perform.register
def _set_kernel_cmdline(action: SetKernelCmdline, ctx: ActionContext) -> str:
    problems = kernel_cmdline_problems(action.cmdline)
    if problems:
        raise ApplyError(f"{action.target}: refusing to set the kernel command line: "
                         + "; ".join(problems[:3]))
    if action.owned is not None:
        problems = kernel_cmdline_problems(" ".join(action.owned))
        if problems:
            raise ApplyError(f"{action.target}: refusing to record the kernel args we wrote: "
                             + "; ".join(problems[:3]))
        return ctx.ops.set_kernel_cmdline(action.object_name, action.cmdline,
                                          owned=action.owned).summary
    return ctx.ops.set_kernel_cmdline(action.object_name, action.cmdline).summary


@perform.register
def _set_vgpu_placement(action: SetVgpuPlacement, ctx: ActionContext) -> str:
    return ctx.ops.set_vgpu_placement(action.object_name, action.placement).summary


# ---- VM settings and devices ------------------------------------------------------------------

@perform.register
def _pin_vm(action: PinVm, ctx: ActionContext) -> str:
    return ctx.ops.pin_vm(action.object_name, action.host).summary


@perform.register
def _attach_host_device(action: AttachHostDevice, ctx: ActionContext) -> str:
    return ctx.ops.attach_host_device(action.object_name, action.device).summary


@perform.register
def _detach_host_device(action: DetachHostDevice, ctx: ActionContext) -> str:
    return ctx.ops.detach_host_device(action.object_name, action.device).summary


@perform.register
def _add_mediated_device(action: AddMediatedDevice, ctx: ActionContext) -> str:
    return ctx.ops.add_mediated_device(action.object_name, action.mdev_type, action.nodisplay,
                                       action.driver_params, instances=action.instance).summary


@perform.register
def _remove_mediated_device(action: RemoveMediatedDevice, ctx: ActionContext) -> str:
    return ctx.ops.remove_mediated_device(action.object_name, action.device_id).summary


@perform.register
def _update_mediated_device(action: UpdateMediatedDevice, ctx: ActionContext) -> str:
    return ctx.ops.update_mediated_device(action.object_name, action.device_id,
                                          action.mdev_type, action.nodisplay,
                                          action.driver_params).summary


@perform.register
def _set_console_vnc(action: SetConsoleVnc, ctx: ActionContext) -> str:
    if action.remove_spice:
        raise ApplyError(f"{action.target}: removing the SPICE console is not supported")
    return ctx.ops.add_vnc_console(action.object_name).summary


# ---- VM power ---------------------------------------------------------------------------------

@perform.register
def _stop_vm(action: StopVm, ctx: ActionContext) -> str:
    # The planner only stops VMs whose spec allows it; a saved plan is checked again against
    # the spec it names, so an edited file cannot stop a VM the spec protects.
    policy = ctx.restart_policy(action.object_name)
    if policy == NOT_IN_SPEC:
        raise ApplyError(f"{action.target}: refusing to stop the VM: no spec names it (only "
                         "VMs whose spec says restart: allowed are ever stopped)")
    if policy is not None and policy != "allowed":
        raise ApplyError(f"{action.target}: refusing to stop the VM: its spec says "
                         f"restart: {policy}")
    return ctx.ops.shutdown_vm(action.object_name, ctx.timeouts.vm_shutdown,
                               stop_timeout=ctx.timeouts.vm_stop).summary


@perform.register
def _start_vm(action: StartVm, ctx: ActionContext) -> str:
    return ctx.ops.start_vm(action.object_name, ctx.timeouts.vm_start).summary


__all__ = ["ActionContext", "perform"]
