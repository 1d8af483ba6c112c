"""Shared helpers for the spec tests: run `reconcile validate` in-process and capture its output."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.cli import main

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
EXAMPLES = REPO / "specs" / "examples"


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if line]


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root so FILE in messages is the short relative path."""
    monkeypatch.chdir(REPO)
    return REPO


@pytest.fixture
def validate(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*args: str, offline: bool = True) -> CliResult:
        # The spec's files and semantics; whether this machine has the CA file and the password
        # a spec names is checked only where a test asks for it (offline=False).
        code = main(["validate", *(["--offline"] if offline else []), *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)
    return run


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a spec file under tmp_path (folders created as needed)."""
    def put(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path
    return put


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """`main()` points structlog at the captured stderr of its test; undo that afterwards, so a
    later test that logs never writes to a closed stream."""
    yield
    import structlog
    structlog.reset_defaults()
