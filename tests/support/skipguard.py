"""A pytest plugin: a run that skips a test not on `tests.support.skips.ALLOWED_SKIPS` fails.

Registered by `tests/conftest.py`, so `make test`, CI and a bare `pytest` all enforce it. The
terminal summary prints the skip count either way. One guard object per pytest run (a run inside
a test, through `pytester`, gets its own).
"""
from __future__ import annotations

import fnmatch

import pytest

from tests.support.skips import ALLOWED_SKIPS, AllowedSkip


def allowed(nodeid: str, reason: str) -> AllowedSkip | None:
    """The allow-list entry that covers this skip, if any."""
    for entry in ALLOWED_SKIPS:
        if fnmatch.fnmatchcase(nodeid, entry.test) and entry.reason in reason:
            return entry
    return None


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


class SkipGuard:
    def __init__(self) -> None:
        self.skips: list[tuple[str, str, AllowedSkip | None]] = []

    @property
    def unlisted(self) -> list[tuple[str, str]]:
        return [(nodeid, reason) for nodeid, reason, entry in self.skips if entry is None]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            reason = _reason(report)
            self.skips.append((report.nodeid, reason, allowed(report.nodeid, reason)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # A module-level skip (pytest.skip(allow_module_level=True)) skips at collection.
        if report.skipped:
            reason = _reason(report)  # type: ignore[arg-type]
            self.skips.append((report.nodeid, reason, allowed(report.nodeid, reason)))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.unlisted and session.exitstatus in (pytest.ExitCode.OK,
                                                    pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        listed = len(self.skips) - len(self.unlisted)
        terminalreporter.write_line(f"skips: {len(self.skips)} ({listed} on the allow-list in "
                                    "tests/support/skips.py)")
        for nodeid, reason in self.unlisted:
            terminalreporter.write_line(f"UNLISTED SKIP (fails the run): {nodeid}: {reason}",
                                        red=True, bold=True)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipGuard(), "skipguard-instance")
