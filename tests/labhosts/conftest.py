"""Fixtures for the lab fleets and simulated host roots."""
from __future__ import annotations

import os
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


@pytest.fixture
def host_root(tmp_path: Path, demo_host: Callable[[str], LabHost]) -> Callable[[str], Path]:
    """Materialise a demo host under tmp_path and return its root."""
    def make(name: str) -> Path:
        return hosts.ensure_host_root(tmp_path / name, demo_host(name))
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
