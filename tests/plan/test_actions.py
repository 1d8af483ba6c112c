"""What each action kind is (host-level, its marker, its place in a cycle, a VM power change) is
declared on its class; these are the classifications the renderers, the rollout, the drift
report and the executor used to keep as lists of kinds."""
from __future__ import annotations

import pytest

from reconciler.plan.actions import (ACTION_TYPES, HOST_KINDS, Disruption, PinVm, Reason,
                                     RegenerateInitramfs, WriteModprobeFile)


def _kinds(**where: object) -> set[str]:
    return {kind for kind, cls in ACTION_TYPES.items()
            if all(getattr(cls, name) == value for name, value in where.items())}


def test_host_level_kinds() -> None:
    assert _kinds(host_level=True) == set(HOST_KINDS) == {
        "set-kernel-cmdline", "write-modprobe-file", "remove-modprobe-file",
        "regenerate-initramfs", "set-vgpu-placement", "host-cycle"}


def test_markers() -> None:
    assert _kinds(marker="+") == {"attach-host-device", "add-mediated-device", "set-console-vnc",
                                  "start-vm"}
    assert _kinds(marker="-") == {"detach-host-device", "remove-mediated-device", "stop-vm",
                                  "remove-modprobe-file"}


def test_host_files_come_before_the_engine_fields_in_a_cycle() -> None:
    order = sorted((cls.cycle_order, kind) for kind, cls in ACTION_TYPES.items()
                   if cls.host_level and kind != "host-cycle")
    assert [kind for _, kind in order] == ["remove-modprobe-file", "write-modprobe-file",
                                           "regenerate-initramfs", "set-kernel-cmdline",
                                           "set-vgpu-placement"]


def test_only_stop_and_start_change_power() -> None:
    assert {kind: cls.vm_power for kind, cls in ACTION_TYPES.items() if cls.vm_power} == {
        "stop-vm": "down", "start-vm": "up"}


def test_disruption_is_declared_where_it_never_varies() -> None:
    pin = PinVm(target="vm:a", before=None, after="h", reason=Reason.SPEC_CHANGE,
                description="pin", host="h")
    assert pin.disruption is Disruption.NONE
    # The modprobe file and the initramfs need a reboot only when a blacklisted module is loaded.
    for cls in (WriteModprobeFile, RegenerateInitramfs):
        with pytest.raises(TypeError, match="disruption"):
            cls(target="host:a", before=None, after=None, reason=Reason.SPEC_CHANGE,
                description="x")
