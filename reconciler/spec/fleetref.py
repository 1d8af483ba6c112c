"""How a spec names the embedded lab's fleet: a built-in fleet by name, or a fleet file by path."""
from __future__ import annotations

from pathlib import Path

# The built-in fleets ship with the project (reconciler.lab.fleet.FLEETS_DIR reads the same
# folder); named here so that validating a spec never imports the lab engine.
BUILTIN_FLEETS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "lab" / "fleets"


def is_fleet_path(fleet: str) -> bool:
    """`demo` names a built-in fleet; anything that looks like a file is a path."""
    return "/" in fleet or fleet.endswith((".yaml", ".yml")) or fleet.startswith("~")


def builtin_fleets() -> list[str]:
    """Names of the built-in lab fleets, sorted."""
    return sorted(p.stem for p in BUILTIN_FLEETS_DIR.glob("*.yaml"))
