"""How a spec names the embedded lab's fleet: a built-in fleet by name, or a fleet file by path."""
from __future__ import annotations

from pathlib import Path

# The built-in fleets: deploy/lab/fleets/ in a checkout, reconciler/data/fleets/ (the copy a wheel
# ships) in an installed copy. reconciler_lab.fleet.FLEETS_DIR is the same folder; it is named
# here so that validating a spec never imports the lab engine.
_REPO_FLEETS = Path(__file__).resolve().parents[2] / "deploy" / "lab" / "fleets"
PACKAGED_FLEETS = Path(__file__).resolve().parents[1] / "data" / "fleets"
BUILTIN_FLEETS_DIR = _REPO_FLEETS if _REPO_FLEETS.is_dir() else PACKAGED_FLEETS


def is_fleet_path(fleet: str) -> bool:
    """`demo` names a built-in fleet; anything that looks like a file is a path."""
    return "/" in fleet or fleet.endswith((".yaml", ".yml")) or fleet.startswith("~")


def builtin_fleets() -> list[str]:
    """Names of the built-in lab fleets, sorted."""
    return sorted(p.stem for p in BUILTIN_FLEETS_DIR.glob("*.yaml"))
