"""Typed errors that carry the message a user should see.

Every error that reaches the CLI is one of these; anything else is a bug and is reported as such.
"""
from __future__ import annotations

from dataclasses import dataclass


class ReconcilerError(Exception):
    """Base class: `str(err)` is the user-facing message."""

    exit_code = 1


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec, located at FILE:LINE:COL and a dotted spec path."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.path}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "column": self.column,
                "path": self.path, "message": self.message}


class SpecError(ReconcilerError):
    """The spec is invalid; `issues` lists every problem found, in file order."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(i.format() for i in issues))


class EngineError(ReconcilerError):
    """The engine refused or could not be reached (after retries)."""


class HostAccessError(ReconcilerError):
    """A host could not be reached or a host command failed."""


class ParseError(ReconcilerError):
    """Host output did not have the expected format."""


class PlanError(ReconcilerError):
    """A plan cannot be made, saved, loaded or is stale."""


class ApplyError(ReconcilerError):
    """Apply stopped: a step failed or a host did not come back."""


class LockedError(ReconcilerError):
    """Another apply holds the lock for this engine."""
