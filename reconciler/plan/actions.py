"""Plan actions: small frozen values that say what to change, how disruptive it is and how to verify it.

Every action has a `kind` (its wire name), a `target` ("host:NAME" / "vm:NAME"), a before/after
pair of human-readable values, a `disruption`, a `reason`, a description and structured
verifications. `to_dict()` / `action_from_dict()` round-trip exactly, so a saved plan is applied as
it was reviewed.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Literal

from reconciler.errors import PlanError
# Disruption is shared vocabulary (reconciler.model.vocab); it stays importable from here.
from reconciler.model.vocab import Disruption

JsonScalar = str | int | bool | None
Marker = Literal["+", "-", "~"]          # how a plan shows an action: adds, removes, changes
VmPower = Literal["down", "up"]          # the VM status a stop or start leaves


class Reason(str, Enum):
    """Why an action is in the plan. For people and reports only: apply never decides by it."""

    SPEC_CHANGE = "spec-change"      # the spec asks for something not applied yet
    DRIFT = "drift"                  # the fleet moved away from an applied spec
    PRUNE = "prune"                  # something the spec manages but no longer lists


VerifyOp = Literal["eq", "contains", "not-contains", "count"]


@dataclass(frozen=True)
class Verification:
    """After the action, re-observe `target` and check `field` (a dotted fact path) with `op`.

    eq: the field equals `value`; contains / not-contains: the token, item or name `value` is (not)
    in the field; count: the field (a collection, optionally filtered as `field[key=value]`) has
    `value` items.
    """

    target: str
    field: str
    op: VerifyOp
    value: JsonScalar

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "field": self.field, "op": self.op, "value": self.value}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Verification:
        return Verification(target=data["target"], field=data["field"], op=data["op"],
                            value=data["value"])


@dataclass(frozen=True, kw_only=True)
class Action:
    """Common fields; subclasses add what their executor step needs.

    What an action *is* lives on its class, next to `kind`, so that no other module keeps a list
    of kinds: `host_level` (a host setting or cycle, grouped per host by the rollout), `marker`
    (how a plan shows it: + adds, - removes, ~ changes), `cycle_order` (where a host cycle runs
    it among the host's settings) and `vm_power` (the VM status a stop or start leaves; None for
    every action that changes configuration). A kind whose disruption never varies declares it
    as the field's default, so its construction sites do not repeat it.

    Like Terraform's plan, the fields fall in two groups:
    - decision-relevant: `kind`, `target`, `disruption` (actions above --max-disruption are not
      run), `verify` (checked after the step; the step fails otherwise), `wave` (which host cycles
      may run together) and every field a subclass adds (the step's arguments). These are what
      apply carries out; changing one changes what a reviewed plan does.
    - for people only: `before`, `after`, `description`, `note` and `reason`. They are shown in
      plans, journaled and reported as drift (`reason` tells drift from pending there), but apply
      never branches on them, so they may be worded as the reader needs.
    """

    kind: ClassVar[str] = "action"
    host_level: ClassVar[bool] = False
    marker: ClassVar[Marker] = "~"
    # Host files first (our modprobe.d file, then the initramfs that carries it), then the
    # engine's fields: a host we could not write to keeps its engine record unchanged.
    cycle_order: ClassVar[int] = 9          # 9: not a host setting
    vm_power: ClassVar[VmPower | None] = None
    target: str                      # "host:NAME" / "vm:NAME"
    before: str | None               # people only: the value now, in human form
    after: str | None                # people only: the value the action sets
    disruption: Disruption
    reason: Reason                   # people only (see Reason)
    description: str                 # people only
    verify: tuple[Verification, ...] = ()
    note: str | None = None          # people only, e.g. "takes effect at next start"
    wave: int | None = None          # host cycle wave this action belongs to (host actions only)

    @property
    def object_name(self) -> str:
        return self.target.split(":", 1)[1]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif f.name == "verify":
                value = [v.to_dict() for v in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


# ---- host actions -------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SetKernelCmdline(Action):
    """PUT host os.custom_kernel_cmdline (any host state; the engine sets reinstallation_required)."""

    kind: ClassVar[str] = "set-kernel-cmdline"
    host_level: ClassVar[bool] = True
    cycle_order: ClassVar[int] = 2
    disruption: Disruption = Disruption.HOST_REBOOT
    cmdline: str = ""
    # The kernel args we wrote, as the host's record (model/ownership.py) says after this change;
    # written in the same PUT. None: the record is left as it is (plans made before records).
    owned: tuple[str, ...] | None = None
    removes_owned: tuple[str, ...] = ()     # people only: our args that leave the line


@dataclass(frozen=True, kw_only=True)
class WriteModprobeFile(Action):
    """Write our own modprobe.d file atomically (a backup of the previous file is kept).

    Its disruption has no default: host-reboot when a module it blacklists is loaded, else none.
    """

    kind: ClassVar[str] = "write-modprobe-file"
    host_level: ClassVar[bool] = True
    cycle_order: ClassVar[int] = 0
    path: str = ""
    content: str = ""


@dataclass(frozen=True, kw_only=True)
class RemoveModprobeFile(Action):
    """Remove our own modprobe.d file (moved aside as a backup) once no profile asks for it."""

    kind: ClassVar[str] = "remove-modprobe-file"
    host_level: ClassVar[bool] = True
    marker: ClassVar[Marker] = "-"
    cycle_order: ClassVar[int] = 0
    disruption: Disruption = Disruption.NONE
    path: str = ""


@dataclass(frozen=True, kw_only=True)
class RegenerateInitramfs(Action):
    """`dracut --force`, so the initramfs carries our modprobe.d file (disruption as the file's)."""

    kind: ClassVar[str] = "regenerate-initramfs"
    host_level: ClassVar[bool] = True
    cycle_order: ClassVar[int] = 1


@dataclass(frozen=True, kw_only=True)
class SetVgpuPlacement(Action):
    kind: ClassVar[str] = "set-vgpu-placement"
    host_level: ClassVar[bool] = True
    cycle_order: ClassVar[int] = 3
    disruption: Disruption = Disruption.NONE
    placement: str = ""


@dataclass(frozen=True, kw_only=True)
class HostCycle(Action):
    """deactivate -> install(reboot=true, activate=false) -> activate -> verify, as one step.

    `expect_args` must be on the booted command line afterwards and `expect_absent` keys must not;
    `stop_vms` / `start_vms` are pinned VMs stopped before and started after (restart: allowed).
    """

    kind: ClassVar[str] = "host-cycle"
    host_level: ClassVar[bool] = True
    disruption: Disruption = Disruption.HOST_REBOOT
    steps: tuple[str, ...] = ("deactivate", "install", "activate", "verify")
    expect_args: tuple[str, ...] = ()
    expect_absent: tuple[str, ...] = ()
    expect_modules_absent: tuple[str, ...] = ()
    cmdline_edit: bool = True        # False: "configured but not booted", the cycle only reboots


# ---- VM actions ---------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class PinVm(Action):
    """Pin the VM to exactly one host. Changing the pinned host drops all its host devices."""

    kind: ClassVar[str] = "pin-vm"
    disruption: Disruption = Disruption.NONE
    host: str = ""


@dataclass(frozen=True, kw_only=True)
class AttachHostDevice(Action):
    kind: ClassVar[str] = "attach-host-device"
    marker: ClassVar[Marker] = "+"
    disruption: Disruption = Disruption.VM_RESTART
    host: str = ""
    device: str = ""


@dataclass(frozen=True, kw_only=True)
class DetachHostDevice(Action):
    kind: ClassVar[str] = "detach-host-device"
    marker: ClassVar[Marker] = "-"
    disruption: Disruption = Disruption.VM_RESTART
    host: str = ""
    device: str = ""


@dataclass(frozen=True, kw_only=True)
class AddMediatedDevice(Action):
    """One vGPU instance (one POST per instance)."""

    kind: ClassVar[str] = "add-mediated-device"
    marker: ClassVar[Marker] = "+"
    disruption: Disruption = Disruption.VM_RESTART
    mdev_type: str = ""
    nodisplay: bool = False
    driver_params: str | None = None
    instance: int = 1


@dataclass(frozen=True, kw_only=True)
class RemoveMediatedDevice(Action):
    kind: ClassVar[str] = "remove-mediated-device"
    marker: ClassVar[Marker] = "-"
    disruption: Disruption = Disruption.VM_RESTART
    device_id: str = ""
    mdev_type: str = ""


@dataclass(frozen=True, kw_only=True)
class UpdateMediatedDevice(Action):
    """PUT replaces all spec params, so the full set is carried."""

    kind: ClassVar[str] = "update-mediated-device"
    disruption: Disruption = Disruption.VM_RESTART
    device_id: str = ""
    mdev_type: str = ""
    nodisplay: bool = False
    driver_params: str | None = None


@dataclass(frozen=True, kw_only=True)
class SetConsoleVnc(Action):
    """Add a VNC graphics console; SPICE stays unless `remove_spice`."""

    kind: ClassVar[str] = "set-console-vnc"
    marker: ClassVar[Marker] = "+"
    disruption: Disruption = Disruption.VM_RESTART
    remove_spice: bool = False


@dataclass(frozen=True, kw_only=True)
class StopVm(Action):
    """Graceful shutdown, then stop if it does not go down in time."""

    kind: ClassVar[str] = "stop-vm"
    marker: ClassVar[Marker] = "-"
    vm_power: ClassVar[VmPower | None] = "down"
    disruption: Disruption = Disruption.VM_RESTART
    host: str | None = None          # where it ran, so that a later start can say so


@dataclass(frozen=True, kw_only=True)
class StartVm(Action):
    kind: ClassVar[str] = "start-vm"
    marker: ClassVar[Marker] = "+"
    vm_power: ClassVar[VmPower | None] = "up"
    disruption: Disruption = Disruption.VM_RESTART
    host: str | None = None


ACTION_TYPES: dict[str, type[Action]] = {cls.kind: cls for cls in (
    SetKernelCmdline, WriteModprobeFile, RemoveModprobeFile, RegenerateInitramfs,
    SetVgpuPlacement, HostCycle,
    PinVm, AttachHostDevice, DetachHostDevice, AddMediatedDevice, RemoveMediatedDevice,
    UpdateMediatedDevice, SetConsoleVnc, StopVm, StartVm)}

# Derived from the classes, for callers that have only a kind; prefer `Action.host_level`.
HOST_KINDS = frozenset(kind for kind, cls in ACTION_TYPES.items() if cls.host_level)


def action_from_dict(data: dict[str, Any]) -> Action:
    """Rebuild an action from `Action.to_dict()` output; unknown kinds or fields are a PlanError."""
    try:
        cls = ACTION_TYPES[data["kind"]]
    except KeyError:
        raise PlanError(f"unknown action kind {data.get('kind')!r} in plan") from None
    kwargs: dict[str, Any] = {}
    names = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key == "kind":
            continue
        if key not in names:
            raise PlanError(f"action {data['kind']}: unknown field {key!r}")
        if key == "disruption":
            value = Disruption(value)
        elif key == "reason":
            value = Reason(value)
        elif key == "verify":
            value = tuple(Verification.from_dict(v) for v in value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise PlanError(f"action {data['kind']}: {err}") from None

