"""The skip guard itself: an unlisted skip fails a run, a listed one does not."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.skipguard import allowed

pytest_plugins = ["pytester"]
REPO = Path(__file__).resolve().parents[2]


def _guarded(pytester: pytest.Pytester) -> None:
    # A run in a separate process would find the plugin through PYTHONPATH; set it for any
    # child of the run too (the runs here are in this process, which is quicker).
    pytester._monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest('pytest_plugins = ["tests.support.skipguard"]\n')


def test_an_unlisted_skip_fails_the_run(pytester: pytest.Pytester) -> None:
    _guarded(pytester)
    pytester.makepyfile(test_missing='''
import pytest

def test_needs_a_module():
    pytest.importorskip("reconciler_no_such_module")

def test_fine():
    assert True
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*skips: 1 (0 on the allow-list*",
                                 "*UNLISTED SKIP (fails the run)*test_needs_a_module*"])


def test_a_module_level_skip_fails_the_run(pytester: pytest.Pytester) -> None:
    _guarded(pytester)
    pytester.makepyfile(test_gone='''
import pytest
pytest.skip("the thing is not built yet", allow_module_level=True)

def test_never_runs():
    assert False
''')
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*UNLISTED SKIP*not built yet*"])


def test_a_run_without_skips_passes(pytester: pytest.Pytester) -> None:
    _guarded(pytester)
    pytester.makepyfile(test_ok="def test_ok():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skips: 0 (0 on the allow-list*"])


def test_listed_skips_need_the_test_and_the_reason() -> None:
    node = "tests/controller_parts/test_deploy.py::test_systemd_analyze_verify_accepts_the_unit"
    assert allowed(node, "systemd-analyze is not installed here") is not None
    assert allowed(node, "some other reason") is None
    assert allowed("tests/plan/test_cases.py::test_x", "systemd-analyze is not installed") is None
