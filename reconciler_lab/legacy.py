"""VM custom properties, and the pre-4.5 `mdev_type` vGPU property, as the engine treats them.

Up to 4.4 a vGPU was the predefined VM custom property `mdev_type=[nodisplay,]type[,type...]`
(engine `0000_config.sql` PredefinedVMProperties). From 4.5 on vGPUs are MDEV VM devices, and the
engine converts the property wherever it meets it (engine `MDevTypesUtils
#convertDeprecatedCustomPropertyToVmDevices`, commit 277acfcd "respect deprecated custom property
mdev_type", in 4.5.0.1+):
- the 4.5 database upgrade (`04_05_0210_mdevs_as_vmdevices.sql`) turns every stored property into
  one device per type, `nodisplay` from a leading `nodisplay,` token, and drops the property;
- `AddVmCommand` / `UpdateVmCommand#init` remove it from the given custom properties and, when it
  was given, replace all the VM's mdev devices with the converted ones (`updateMdevDevices`).
So on a 4.5 engine a VM never shows `mdev_type`, and a client that keeps sending it (the
`ovirt.ovirt` collection's `custom_properties`) sees a change on every run. A 4.4 engine keeps the
property as given.
"""
from __future__ import annotations

import re

from reconciler_lab.errors import EngineFault

PROPERTY = "mdev_type"

# PredefinedVMProperties per cluster level (engine 0000_config.sql), name -> value regexp.
_BASE = {
    "sap_agent": r"^(true|false)$", "sndbuf": r"^[0-9]+$",
    "vhost": r"^(([a-zA-Z0-9_-]*):(true|false))(,(([a-zA-Z0-9_-]*):(true|false)))*$",
    "viodiskcache": r"^(none|writeback|writethrough)$", "hugepages": r"^[0-9]+$",
    "scsi_hostdev": r"^(scsi_generic|scsi_block|scsi_hd|virtio_blk_pci)$",
    "nvram_template": r"^.*$",
}
_EXTRA_CPU_FLAGS = r"^([+-]?[a-zA-Z0-9_-]+)(,[+-]?[a-zA-Z0-9_-]+)*$"
_MDEV_TYPE = r"^[^,](,?[0-9A-Za-z_-]+)+$"


def _version_tuple(version: str) -> tuple[int, int]:
    parts = [int(p) if p.isdigit() else 0 for p in (version.split(".") + ["0"])[:2]]
    return parts[0], parts[1]


def converts(engine_version: str) -> bool:
    """Whether this engine turns `mdev_type` into mediated devices (4.5 and later)."""
    return _version_tuple(engine_version) >= (4, 5)


def predefined(engine_version: str, cluster_version: str) -> dict[str, str]:
    props = dict(_BASE)
    if _version_tuple(cluster_version) >= (4, 7):
        props["extra_cpu_flags"] = _EXTRA_CPU_FLAGS
    if not converts(engine_version):
        props[PROPERTY] = _MDEV_TYPE
    return props


def validate(props: dict[str, str], engine_version: str, cluster_version: str) -> None:
    """VmPropertiesUtils: unknown keys, then illegal values, each with the engine's message."""
    known = predefined(engine_version, cluster_version)
    missing = sorted(k for k in props if k not in known)
    if missing:
        raise EngineFault(400, "[Cannot edit VM if some of the specified custom properties are "
                               "not configured by the system. The keys are: "
                               f"{', '.join(missing)}]")
    wrong = sorted(k for k, v in props.items() if not re.match(known[k], v))
    if wrong:
        raise EngineFault(400, "[Cannot edit VM if some of the specified custom properties have "
                               f"illegal values. The keys are: {', '.join(wrong)}]")


def to_mdevs(value: str) -> list[dict[str, str]]:
    """The mediated devices (spec params) a property value stands for, as the engine converts it:
    `nodisplay` anywhere in the list applies to the types after it."""
    devices: list[dict[str, str]] = []
    nodisplay = False
    for token in value.split(","):
        if token == "nodisplay":
            nodisplay = True
        elif token:
            devices.append({"mdevType": token, "nodisplay": "true" if nodisplay else "false"})
    return devices


__all__ = ["PROPERTY", "converts", "predefined", "to_mdevs", "validate"]
