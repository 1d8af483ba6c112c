"""Fixtures for planner tests: fixture files live next to this file (cases/, golden/)."""
from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
CASES = HERE / "cases"
GOLDEN = HERE / "golden"


@pytest.fixture
def cases_dir() -> Path:
    return CASES


@pytest.fixture
def golden_dir() -> Path:
    return GOLDEN
