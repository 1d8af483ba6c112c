"""What a wheel ships: the spec schema and the built-in lab fleets inside the package, identical
to the copies in schemas/ and deploy/lab/fleets/, and used when the package stands alone."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from reconciler.spec.fleetref import PACKAGED_FLEETS
from reconciler.spec.schema import PACKAGED_SCHEMA
from tests.spec.conftest import REPO

STANDALONE_CHECK = """
import sys
from pathlib import Path
import reconciler
from reconciler_lab.fleet import FLEETS_DIR, load_fleet
from reconciler.spec import load_desired
from reconciler.spec.schema import SCHEMA_PATH
package = Path(reconciler.__file__).resolve().parent
assert SCHEMA_PATH.is_relative_to(package), SCHEMA_PATH
assert FLEETS_DIR.is_relative_to(package), FLEETS_DIR
state = load_desired([sys.argv[1]])
assert state.engine.lab_fleet == "demo"
print(len(load_fleet(state.engine.lab_fleet).hosts), len(state.vms))
"""


def test_packaged_copies_match_the_repository_files() -> None:
    assert PACKAGED_SCHEMA.read_bytes() == (REPO / "schemas" / "spec.schema.json").read_bytes(), (
        "copy schemas/spec.schema.json to reconciler/data/spec.schema.json")
    repo_fleets = {p.name: p.read_bytes() for p in (REPO / "deploy/lab/fleets").glob("*.yaml")}
    packaged = {p.name: p.read_bytes() for p in PACKAGED_FLEETS.glob("*.yaml")}
    assert repo_fleets and packaged == repo_fleets, (
        "copy deploy/lab/fleets/*.yaml to reconciler/data/fleets/")


def test_the_package_alone_validates_and_finds_its_fleets(tmp_path: Path) -> None:
    # As installed from a wheel: the package without schemas/ and deploy/ beside it.
    site = tmp_path / "site"
    shutil.copytree(REPO / "reconciler", site / "reconciler",
                    ignore=shutil.ignore_patterns("__pycache__"))
    spec = tmp_path / "lab.yaml"
    shutil.copy(REPO / "specs" / "examples" / "lab.yaml", spec)
    proc = subprocess.run([sys.executable, "-c", STANDALONE_CHECK, str(spec)],
                          cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["4", "5"]
