"""Fixtures for the host probe tests: fixture host roots and helpers to build small roots."""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

HOSTS = Path(__file__).resolve().parent.parent / "fixtures" / "hosts"


@pytest.fixture
def hosts_dir() -> Path:
    return HOSTS


@pytest.fixture
def copy_root(tmp_path: Path) -> Callable[[str], Path]:
    """A private copy of a fixture root (symlinks kept) that a test may change."""
    def copy(name: str) -> Path:
        dest = tmp_path / name
        shutil.copytree(HOSTS / name, dest, symlinks=True)
        return dest
    return copy


def write(root: Path, rel: str, content: str, mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    os.chmod(path, mode)
    return path
