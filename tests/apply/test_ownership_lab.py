"""What we wrote leaves when it leaves the spec; what we did not write stays. End to end on the
lab engine: the engine's command line and the record in the host's comment, the booted line after
the host cycle, and the modprobe.d files on the host."""
from __future__ import annotations

from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
import yaml

from reconciler.model.ownership import owned_kernel_args
from reconciler.plan.render_text import render_text

from .conftest import write_spec

pytestmark = pytest.mark.lab

HOST = "m60-02"
OUR_FILE = "etc/modprobe.d/gpu-reconciler.conf"
THEIR_FILE = "etc/modprobe.d/nvidia-installer-disable-nouveau.conf"


def _profile(kernel: dict, modprobe: dict | None = None) -> list[dict]:
    profile = {"name": "m60-02", "selector": {"names": [HOST]}, "kernel": kernel}
    if modprobe is not None:
        profile["modprobe"] = modprobe
    return [profile]


def _engine_host(lab) -> tuple[str, str]:
    conn = sdk.Connection(url=lab.server.url, username=lab.server.username,
                          password=lab.server.password, ca_file=str(lab.server.ca_file))
    try:
        host = conn.system_service().hosts_service().list(search=f"name={HOST}")[0]
        return host.os.custom_kernel_cmdline or "", host.comment or ""
    finally:
        conn.close()


def _as_admin(lab, cmdline: str, comment: str) -> None:
    """What an administrator does in the Admin Portal, outside the reconciler."""
    conn = sdk.Connection(url=lab.server.url, username=lab.server.username,
                          password=lab.server.password, ca_file=str(lab.server.ca_file))
    try:
        hosts = conn.system_service().hosts_service()
        host = hosts.list(search=f"name={HOST}")[0]
        hosts.host_service(host.id).update(types.Host(
            comment=comment, os=types.OperatingSystem(custom_kernel_cmdline=cmdline)))
    finally:
        conn.close()


def test_removals_of_our_args_and_file_are_planned_and_applied_foreign_ones_stay(served_lab):
    lab = served_lab(hostProfiles=_profile({"iommu": True, "extraArgs": ["pci=realloc"]},
                                           {"blacklist": ["nouveau"]}), vms=[])
    root = lab.state / "hosts" / HOST
    # The administrator's own argument and note, there before the reconciler came.
    _as_admin(lab, "nosmt", "rack 4")

    first = lab.apply()
    assert first.exit_code == 0, lab.output
    line, comment = _engine_host(lab)
    assert line == "nosmt intel_iommu=on pci=realloc"
    assert comment == "rack 4 [gpu-reconciler kernel-args: intel_iommu=on pci=realloc]"
    assert (root / OUR_FILE).exists() and (root / THEIR_FILE).exists()
    booted = (root / "proc/cmdline").read_text().split()
    assert {"nosmt", "intel_iommu=on", "pci=realloc"} <= set(booted)

    # The spec drops pci=realloc and the modprobe section.
    body = yaml.safe_load(lab.spec.read_text())
    body["hostProfiles"] = _profile({"iommu": True})
    write_spec(lab.spec, body)
    planned = lab.plan()
    kinds = [(a.kind, a.target) for a in planned.actions]
    assert kinds == [("set-kernel-cmdline", f"host:{HOST}"),
                     ("remove-modprobe-file", f"host:{HOST}"),
                     ("regenerate-initramfs", f"host:{HOST}"), ("host-cycle", f"host:{HOST}")]
    text = render_text(planned)
    # shown as removals: the `-` lines say what goes and why
    assert "  - remove-modprobe-file: remove /etc/modprobe.d/gpu-reconciler.conf" in text
    assert "      - pci=realloc (written by gpu-reconciler; no longer in the spec)" in text
    assert "'nosmt intel_iommu=on pci=realloc' -> 'nosmt intel_iommu=on'" in text

    second = lab.apply()
    assert second.exit_code == 0, lab.output
    line, comment = _engine_host(lab)
    assert line == "nosmt intel_iommu=on"                       # ours gone, the admin's kept
    assert comment == "rack 4 [gpu-reconciler kernel-args: intel_iommu=on]"
    assert owned_kernel_args(comment) == ("intel_iommu=on",)
    booted = (root / "proc/cmdline").read_text().split()
    assert "pci=realloc" not in booted and {"nosmt", "intel_iommu=on"} <= set(booted)
    assert not (root / OUR_FILE).exists()
    assert (root / THEIR_FILE).exists()                         # never ours, never touched
    backups = list((root / "etc/modprobe.d").glob("gpu-reconciler.conf.*.reconciler-backup"))
    assert backups
    assert lab.plan().actions == ()


def test_an_arg_nobody_recorded_stays_when_the_spec_stops_naming_it(served_lab):
    # pci=realloc was on the engine line before the reconciler: adopted, never recorded as ours.
    lab = served_lab(hostProfiles=_profile({"iommu": True, "extraArgs": ["pci=realloc"]}), vms=[])
    _as_admin(lab, "pci=realloc", "")
    assert lab.apply().exit_code == 0, lab.output
    line, comment = _engine_host(lab)
    assert line == "pci=realloc intel_iommu=on"
    assert owned_kernel_args(comment) == ("intel_iommu=on",)
    body = yaml.safe_load(lab.spec.read_text())
    body["hostProfiles"] = _profile({"iommu": True})
    write_spec(lab.spec, body)
    assert lab.plan().actions == ()
