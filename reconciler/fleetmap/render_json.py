"""The fleet map as JSON (schemas/fleet.schema.json)."""
from __future__ import annotations

import json
from typing import Any

from reconciler.fleetmap.model import FleetMap

FORMAT_VERSION = 1


def fleet_to_json(fm: FleetMap) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, **fm.to_dict()}


def render_json(fm: FleetMap) -> str:
    return json.dumps(fleet_to_json(fm), indent=2) + "\n"
