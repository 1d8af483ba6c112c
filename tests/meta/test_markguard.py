"""The marker guard: every test that starts the lab engine, sshd or PostgreSQL carries its marker,
so that `pytest -m "not lab and not ssh and not postgres"` is the pure suite
(tests/support/markguard.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


def _collected_the_whole_suite(config: pytest.Config) -> bool:
    """True when this run collected all of tests/ (before -m or -k deselected anything)."""
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        if path.resolve() in (TESTS, REPO):
            return True
    return False


def test_every_test_that_uses_a_lab_or_sshd_fixture_is_marked(
        pytestconfig: pytest.Config) -> None:
    guard = pytestconfig.pluginmanager.get_plugin("markguard-instance")
    assert guard is not None, "tests/conftest.py no longer registers tests.support.markguard"
    if _collected_the_whole_suite(pytestconfig):
        # This run's collection already went over every test: no second collection needed.
        unmarked = [f"{nodeid}: needs @pytest.mark.{name}" for nodeid, name in guard.unmarked]
    else:
        run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                              "-p", "no:cacheprovider", str(TESTS)],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
        unmarked = [line for line in run.stdout.splitlines() if line.startswith("UNMARKED")]
        assert unmarked or run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert not unmarked, "\n".join(unmarked)


# ---- the guard itself, on throwaway test files ---------------------------------------------------

def _guarded(pytester: pytest.Pytester) -> None:
    # A run in a separate process, and the children of any run, find the plugin (and the lab)
    # through PYTHONPATH. Runs in this process restore what the guard changes when they end.
    pytester._monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest('pytest_plugins = ["tests.support.markguard"]\n')
    pytester.makeini("[pytest]\nmarkers =\n    lab: starts the lab engine\n"
                     "    ssh: starts sshd\n")


def test_a_lab_or_sshd_fixture_without_the_marker_fails_the_run(
        pytester: pytest.Pytester) -> None:
    _guarded(pytester)
    pytester.makepyfile(test_fixtures='''
import pytest

@pytest.fixture
def lab():              # by its name, a fixture that starts the lab engine
    return object()

@pytest.fixture
def sshd():
    return object()

@pytest.fixture
def conn(lab):          # anything built on it needs the marker too
    return lab

def test_unmarked(conn):
    pass

@pytest.mark.lab
def test_marked(lab):
    pass

def test_unmarked_ssh(sshd):
    pass

def test_pure():
    pass
''')
    # Deselected tests are checked too: the check runs before -k and -m.
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "test_pure")
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*UNMARKED LAB TEST (fails the run): test_fixtures.py::test_unmarked uses a fixture*",
        "*UNMARKED SSH TEST (fails the run): test_fixtures.py::test_unmarked_ssh uses*"])
    assert "::test_marked" not in result.stdout.str()


def test_a_start_without_the_marker_fails_the_test(pytester: pytest.Pytester) -> None:
    _guarded(pytester)
    pytester.makepyfile(test_starts='''
import subprocess
import sys

import pytest

from tests.support.labwatch import record

def test_starts_unmarked():
    record("lab")

@pytest.mark.lab
def test_starts_marked():
    record("lab")

def test_child_starts_unmarked():
    subprocess.run([sys.executable, "-c",
                    "from tests.support.labwatch import record; record('ssh')"], check=True)

def test_starts_nothing():
    pass
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines([
        "*test_starts.py::test_starts_unmarked started the lab engine but is not marked "
        "@pytest.mark.lab*",
        "*test_starts.py::test_child_starts_unmarked started sshd but is not marked "
        "@pytest.mark.ssh*"])


@pytest.mark.lab
def test_a_real_lab_start_is_seen_in_this_process_and_in_children(
        pytester: pytest.Pytester) -> None:
    _guarded(pytester)
    pytester.makepyfile(test_real='''
import subprocess
import sys

START = """
import sys
from pathlib import Path
from reconciler_lab.fleet import LabCluster, LabFleet
from reconciler_lab.server import LabServer
fleet = LabFleet("empty", (LabCluster("c", "Intel Cascadelake Server Family"),), ())
with LabServer(fleet, Path(sys.argv[1]), tls=False):
    pass
"""

def test_in_this_process(tmp_path):
    exec(START.replace("Path(sys.argv[1])", repr(str(tmp_path / "lab"))))

def test_in_a_child(tmp_path):
    subprocess.run([sys.executable, "-c", START, str(tmp_path / "lab")], check=True)
''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*test_real.py::test_in_this_process started the lab engine but is not marked*",
        "*test_real.py::test_in_a_child started the lab engine but is not marked*"])


def test_a_postgres_server_without_the_marker_fails(pytester: pytest.Pytester) -> None:
    _guarded(pytester)
    pytester.makeini("[pytest]\nmarkers =\n    lab: starts the lab engine\n"
                     "    ssh: starts sshd\n    postgres: starts PostgreSQL\n")
    pytester.makepyfile(test_pg='''
import pytest

from tests.support.labwatch import record

@pytest.fixture
def postgres_url():     # by its name, a fixture that starts a PostgreSQL server
    return "postgresql://x@127.0.0.1:1/x"

def test_unmarked_fixture(postgres_url):
    pass

def test_unmarked_start():
    record("postgres")

@pytest.mark.postgres
def test_marked_start():
    record("postgres")
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*test_pg.py::test_unmarked_start started a PostgreSQL server but is not marked "
        "@pytest.mark.postgres*"])
    result.stdout.fnmatch_lines([
        "*UNMARKED POSTGRES TEST (fails the run): test_pg.py::test_unmarked_fixture uses*"])
