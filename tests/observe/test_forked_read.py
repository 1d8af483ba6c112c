"""The VM list read by a forked child (reconciler.observe.forked) while the parent reads the
hosts: the same facts and requests as a read in one process, and a child that fails leaves the
read to the parent."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.observe.forked import ForkedCall, ForkedCallFailed
from tests.observe.conftest import api_requests

ROOT = Path(__file__).resolve().parents[2]


def test_a_forked_call_returns_what_the_child_made() -> None:
    parent = os.getpid()
    assert ForkedCall(lambda n: (os.getpid() != parent, n * 2), 21).result(timeout=30) \
        == (True, 42)


def _raises() -> None:
    raise ValueError("the engine said no")


def test_a_forked_call_reports_what_the_child_raised() -> None:
    with pytest.raises(ForkedCallFailed, match="ValueError: the engine said no"):
        ForkedCall(_raises).result(timeout=30)


def test_a_child_that_dies_or_hangs_is_reported_and_gone() -> None:
    with pytest.raises(ForkedCallFailed, match=r"ended without a result \(exit code 3\)"):
        ForkedCall(os._exit, 3).result(timeout=30)
    hanging = ForkedCall(time.sleep, 600)
    process = hanging._process   # noqa: SLF001 - the test checks the child is gone
    with pytest.raises(ForkedCallFailed, match="no result within 0.5s"):
        hanging.result(timeout=0.5)
    assert not process.is_alive() and process.exitcode is not None


def _read_elsewhere(lab: Any, tmp_path: Path, *extra: str) -> dict[str, Any]:
    password = tmp_path / "password"
    password.write_text(lab.password + "\n")
    password.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "tests.observe.read_in_subprocess", lab.url, str(lab.ca_file),
         lab.username, str(password), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _list_statuses(lab: Any, collection: str) -> list[int]:
    return [r.status for r in api_requests(lab)
            if r.method == "GET" and r.path.endswith("/" + collection)]


@pytest.mark.lab
def test_the_vm_list_read_by_a_forked_child_gives_the_same_facts(start_lab, fleets,
                                                                   tmp_path: Path) -> None:
    lab = start_lab(fleets.generate_fleet(24, 4, 120))
    out = _read_elsewhere(lab, tmp_path)
    assert out["could_fork"] and not out["could_fork_with_a_thread"]
    assert out["forked_child_cpu"] > 0 and out["here_child_cpu"] == 0
    assert out["same"], out["difference"]
    assert out["hosts"] == 24 and out["vms"] == 120 and out["devices"] > 24 * 4
    # The same three requests both ways, counted on the parent's connection; one login only.
    assert out["requests"] == [3, 3] and out["counted"] == 6
    assert _list_statuses(lab, "vms") == _list_statuses(lab, "hosts") == [200, 200]
    assert sum(1 for r in lab.request_log if r.path.endswith("/sso/oauth/token")) == 1


@pytest.mark.lab
def test_a_child_that_fails_leaves_the_vm_list_to_the_parent(start_lab, fleets,
                                                               tmp_path: Path) -> None:
    lab = start_lab(fleets.load_fleet("demo"))
    out = _read_elsewhere(lab, tmp_path, "broken-sibling")
    assert out["same"] and out["hosts"] > 0, out["difference"]
    # The child's refused request, then the parent's own, both counted.
    assert _list_statuses(lab, "vms") == [401, 200, 200]
    assert out["requests"] == [4, 3]


@pytest.mark.lab
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_forked_read_under_dropped_connections_gives_the_same_facts(start_lab, fleets,
                                                                      tmp_path: Path,
                                                                      seed: int) -> None:
    from reconciler_lab.faults import FaultConfig

    # 30 % of the API requests are cut off unanswered: the child's one attempt may fail (then
    # the parent reads the VM list itself), the parent's own reads are retried.
    lab = start_lab(fleets.generate_fleet(12, 4, 60),
                    faults=FaultConfig(drop_rate=0.3, seed=seed))
    out = _read_elsewhere(lab, tmp_path)
    assert out["could_fork"]
    assert out["same"], out["difference"]
    assert out["hosts"] == 12 and out["vms"] == 60
