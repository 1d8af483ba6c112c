"""A pytest plugin: a test that starts the lab engine, sshd or a PostgreSQL server must carry the
`lab` / `ssh` / `postgres` marker.

`pytest -m "not lab and not ssh and not postgres"` is the fast, pure suite; it stays pure only while every test
that starts one of them says so. Two checks, in every run (registered by `tests/conftest.py`):

1. At collection, before `-m` deselects anything: a test whose fixtures include one that starts
   the lab engine (`LAB_FIXTURES`) or sshd (`SSH_FIXTURES`) and that lacks the marker fails the
   run, named in the summary.
2. While a test runs: a lab engine started in this process (`LabServer.start`) or in a Python
   child process (the `reconcile` CLI with an embedded or served lab), or a throwaway sshd
   (`tests.sshd.running_sshd`), or a throwaway PostgreSQL server
   (`tests.support.postgres.running_postgres`), fails the test unless it has the marker.

Child processes are seen through `tests/support/labwatch.py`, copied as `sitecustomize.py` into a
folder this plugin puts first on PYTHONPATH; a child given an environment without that
PYTHONPATH is not seen (check 1 still applies to it).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import labwatch

LAB_FIXTURES = frozenset({"lab", "start_lab", "served_lab", "pristine_demo", "slow_lab"})
SSH_FIXTURES = frozenset({"sshd", "ssh_transport_factory"})
POSTGRES_FIXTURES = frozenset({"postgres_server", "postgres_url"})
STARTS = {"lab": "the lab engine", "ssh": "sshd",     # record kind -> what was started
          "postgres": "a PostgreSQL server"}
_OFFSET = pytest.StashKey[int]()


def needed_markers(item: pytest.Item) -> set[str]:
    """The markers `item` needs because of the fixtures it uses."""
    names = set(getattr(item, "fixturenames", ()))
    return (({"lab"} if names & LAB_FIXTURES else set())
            | ({"ssh"} if names & SSH_FIXTURES else set())
            | ({"postgres"} if names & POSTGRES_FIXTURES else set()))


def markers(item: pytest.Item) -> set[str]:
    return {m.name for m in item.iter_markers() if m.name in STARTS}


class MarkGuard:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "starts.log"
        self.log.touch()
        self.unmarked: list[tuple[str, str]] = []
        self.saved_env: dict[str, str | None] = {}

    # ---- check 1: fixtures -------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            for name in sorted(needed_markers(item) - markers(item)):
                self.unmarked.append((item.nodeid, name))

    # ---- check 2: starts while a test runs ---------------------------------------------------

    def _started(self, item: pytest.Item) -> set[str]:
        with self.log.open() as f:
            f.seek(item.stash.get(_OFFSET, 0))
            return {line.split()[0] for line in f if line.strip()}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        item.stash[_OFFSET] = self.log.stat().st_size

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        if call.when == "setup" and not report.passed:
            return
        if call.when not in ("call", "teardown") or report.failed:
            return
        missing = sorted(self._started(item) - markers(item))
        if missing:
            what = " and ".join(STARTS[k] for k in missing)
            marks = " and ".join(f"@pytest.mark.{k}" for k in missing)
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} started {what} but is not marked {marks}: "
                               f"mark it (module pytestmark or the test), so that "
                               f"`pytest -m \"not lab and not ssh and not postgres\"` stays the "
                               f"pure suite")
            item.stash[_OFFSET] = self.log.stat().st_size     # reported once

    # ---- the outcome ---------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.unmarked and session.exitstatus in (pytest.ExitCode.OK,
                                                    pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for nodeid, name in self.unmarked:
            terminalreporter.write_line(
                f"UNMARKED {name.upper()} TEST (fails the run): {nodeid} uses a fixture that "
                f"starts {STARTS[name]}; mark it @pytest.mark.{name}", red=True, bold=True)

    def pytest_unconfigure(self) -> None:
        for name, value in self.saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(self.folder, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    folder = Path(tempfile.mkdtemp(prefix="markguard-"))
    shutil.copyfile(Path(labwatch.__file__), folder / "sitecustomize.py")
    guard = MarkGuard(folder)
    guard.saved_env = {name: os.environ.get(name) for name in (labwatch.LOG_ENV, "PYTHONPATH")}
    os.environ[labwatch.LOG_ENV] = str(guard.log)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)
    labwatch.install()
    config.pluginmanager.register(guard, "markguard-instance")
