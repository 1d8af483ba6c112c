"""Active mediated devices from the probe's symlink records.

Two views of the same sysfs tree (kernel ABI sysfs-bus-vfio-mdev): each type directory lists its
mdevs under `devices/`, and each mdev directory (a child of its parent device) links back to its
type with `mdev_type`. The link is the mdev's own word on its type; the listing is the fallback
when the mdev directory could not be read.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.model.facts import ActiveMdev

MDEV_BUS = "/sys/class/mdev_bus/"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_LISTED = re.compile(rf"^{MDEV_BUS}([^/]+)/mdev_supported_types/([^/]+)/devices/({_UUID})$")
_TYPE_LINK = re.compile(rf"^{MDEV_BUS}([^/]+)/({_UUID})/mdev_type$")


def active_mdevs(links: Mapping[str, str]) -> tuple[ActiveMdev, ...]:
    """`links`: probe path -> symlink target. Sorted by parent, then UUID."""
    found: dict[tuple[str, str], str] = {}
    for path, target in links.items():
        m = _LISTED.match(path)
        if m:
            found.setdefault((m.group(1), m.group(3).lower()), m.group(2))
    for path, target in links.items():
        m = _TYPE_LINK.match(path)
        if m:
            found[(m.group(1), m.group(2).lower())] = target.rstrip("/").rsplit("/", 1)[-1]
    return tuple(ActiveMdev(uuid=u, parent=p, mdev_type=t) for (p, u), t in sorted(found.items()))
