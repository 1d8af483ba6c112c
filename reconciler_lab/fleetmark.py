"""Which fleet file a lab state folder was made from.

A state folder holds the engine as it evolved from one fleet. Started with another fleet (a
regenerated `big.yaml`, two fleet files of the same name, an edited demo fleet), the engine would
load the old state and carry on with hosts, devices and VMs the fleet no longer has. So the digest
of the fleet file is kept beside the state, and a lab on a folder made from a different fleet is
refused with the way out (`reconcile lab reset`). Call it while holding the folder's lock.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reconciler_lab.server import LabError
from reconciler.spec.fleetref import BUILTIN_FLEETS_DIR, is_fleet_path

MARK_NAME = "fleet.sha256"
STATE_FILE = "engine.json"


class LabFleetChanged(LabError):
    """The state folder was made from another fleet (or an earlier version of this one)."""


def fleet_file(fleet: str | Path) -> Path:
    """The file behind a fleet reference: a built-in name (`demo`) or a path."""
    text = str(fleet)
    return Path(fleet) if is_fleet_path(text) else BUILTIN_FLEETS_DIR / f"{text}.yaml"


def check_fleet_mark(state_dir: Path, fleet: str | Path) -> None:
    """Refuse a state folder made from another fleet file; remember this one's otherwise."""
    source = fleet_file(fleet)
    try:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
    except OSError:
        return   # loading the fleet reports a missing or unreadable file in its own words
    mark = Path(state_dir) / MARK_NAME
    try:
        recorded = mark.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        recorded = ""
    if recorded and recorded != digest and (Path(state_dir) / STATE_FILE).exists():
        raise LabFleetChanged(
            f"the lab state in {state_dir} was made from a different fleet than {source} (the "
            f"file changed since): run `reconcile lab reset --state {state_dir}` to start anew "
            "from the fleet, or use another state folder")
    if recorded != digest:
        tmp = mark.with_name(MARK_NAME + ".tmp")
        tmp.write_text(digest + "\n", encoding="ascii")
        os.replace(tmp, mark)


__all__ = ["LabFleetChanged", "MARK_NAME", "check_fleet_mark", "fleet_file"]
