"""Fixtures for the lab fleets and simulated host roots."""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler_lab import hosts
from reconciler_lab.fleet import LabFleet, LabHost, load_fleet


@pytest.fixture(scope="session")
def demo() -> LabFleet:
    return load_fleet("demo")


@pytest.fixture
def demo_host(demo: LabFleet) -> Callable[[str], LabHost]:
    def get(name: str) -> LabHost:
        return next(h for h in demo.hosts if h.name == name)
    return get


@pytest.fixture(scope="session")
def pristine_roots(tmp_path_factory: pytest.TempPathFactory, demo: LabFleet
                   ) -> Callable[[str], Path]:
    """Each demo host's root, materialised once per run (a test gets its own copy)."""
    made: dict[str, Path] = {}
    folder = tmp_path_factory.mktemp("pristine-roots")

    def get(name: str) -> Path:
        if name not in made:
            host = next(h for h in demo.hosts if h.name == name)
            made[name] = Path(hosts.ensure_host_root(folder / name, host))
        return made[name]
    return get


@pytest.fixture
def host_root(tmp_path: Path, pristine_roots: Callable[[str], Path]) -> Callable[[str], Path]:
    """A demo host's root under tmp_path: a copy (links, modes and times kept) of the root the
    lab materialised for it once this run."""
    def make(name: str) -> Path:
        root = tmp_path / name
        if not root.exists():
            shutil.copytree(pristine_roots(name), root, symlinks=True)
        return root
    return make


def run_cmd(root: Path, *argv: str, env_root: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an emulated command of `root` the way the probe does: <root>/usr/bin/<cmd> with
    HOST_ROOT set."""
    env = {k: v for k, v in os.environ.items() if k != "HOST_ROOT"}
    if env_root:
        env["HOST_ROOT"] = str(root)
    return subprocess.run([str(root / "usr/bin" / argv[0]), *argv[1:]], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def run() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cmd
