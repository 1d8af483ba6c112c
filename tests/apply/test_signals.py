"""`reconcile apply` and SIGTERM, in a real process against a served lab: once, the run ends at
its next safe point and puts back the host it was moving to maintenance; twice, it exits at once
(143) and the next apply brings back what it left down."""
from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import pytest
import yaml

from reconciler_lab.fleet import LabCluster, LabFleet, LabHost, LabVm
from reconciler_lab.server import LabServer
from tests.support.secrets import write_secret
from tests.support.waiting import wait_for

pytestmark = pytest.mark.lab


def _fleet() -> LabFleet:
    """gpu-01 needs a reboot for its kernel args; desk-01 runs on it and only its user may
    migrate it, so the engine keeps gpu-01 in preparing_for_maintenance: a wait that never ends
    by itself."""
    def host(name: str) -> LabHost:
        return LabHost(name=name, cluster="gpu", cpu_type="Intel Cascadelake Server Family",
                       cpu_name="Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    return LabFleet(name="signals", clusters=(LabCluster("gpu", "Intel Cascadelake Server Family"),),
                    hosts=(host("gpu-01"), host("gpu-02")),
                    vms=(LabVm("desk-01", "gpu", status="up", host="gpu-01",
                               affinity="user_migratable"),))


def _spec(lab: LabServer, folder: Path) -> Path:
    password = write_secret(folder / "pw", lab.password)
    spec = {"apiVersion": "gpu-reconciler/v1",
            "engine": {"url": lab.url, "username": lab.username,
                       "passwordFrom": {"file": str(password)}, "caFile": str(lab.ca_file)},
            "hostProfiles": [{"name": "gpu", "selector": {"names": ["gpu-01"]},
                              "kernel": {"iommu": True},
                              "rollout": {"maxUnavailable": 1, "reboot": "allowed"}}]}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _start_apply(spec: Path, state: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "reconciler", "--log-level", "warning",
                             "apply", str(spec), "--yes", "--state", str(state),
                             "--host-timeout", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _deactivating(state: Path) -> bool:
    if not state.exists():
        return False
    try:
        with sqlite3.connect(state) as db:
            return db.execute("SELECT 1 FROM journal WHERE action = 'deactivate' AND "
                              "finished_at IS NULL").fetchone() is not None
    except sqlite3.OperationalError:      # the apply is still creating the store
        return False


def _status(lab: LabServer, name: str) -> str:
    conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                          ca_file=str(lab.ca_file))
    try:
        host = conn.system_service().hosts_service().list(search=f"name={name}")[0]
        return str(host.status.value)
    finally:
        conn.close()


def _run_until_deactivating(lab: LabServer, tmp_path: Path) -> tuple[subprocess.Popen[str], Any]:
    spec, state = _spec(lab, tmp_path), tmp_path / "state.db"
    proc = _start_apply(spec, state)
    wait_for(lambda: _deactivating(state) or proc.poll() is not None, timeout=60)
    assert proc.poll() is None, proc.communicate()
    wait_for(lambda: _status(lab, "gpu-01") == "preparing_for_maintenance", timeout=30)
    return proc, (spec, state)


def test_sigterm_puts_the_host_back_and_ends_the_run_as_stopped(tmp_path: Path) -> None:
    with LabServer(_fleet(), tmp_path / "lab", time_scale=0.01) as lab:
        proc, _ = _run_until_deactivating(lab, tmp_path)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, out + err
        assert "SIGTERM: stopping at the next safe point" in err
        assert "stopped while host gpu-01 was moving to maintenance" in out
        assert _status(lab, "gpu-01") == "up"
        assert "Traceback" not in err


def test_a_second_sigterm_exits_at_once_and_the_next_apply_brings_the_host_back(
        tmp_path: Path) -> None:
    with LabServer(_fleet(), tmp_path / "lab", time_scale=0.01) as lab:
        proc, (spec, state) = _run_until_deactivating(lab, tmp_path)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)      # two separate deliveries, as from a supervisor and a user
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + signal.SIGTERM, out + err
        assert "SIGTERM again: exiting now" in err
        rerun = subprocess.run([sys.executable, "-m", "reconciler", "--log-level", "warning",
                                "apply", str(spec), "--yes", "--state", str(state),
                                "--max-disruption", "none"], capture_output=True, text=True,
                               timeout=120)
        assert "bringing back what an earlier run left down: host gpu-01" in rerun.stdout, \
            rerun.stdout + rerun.stderr
        assert _status(lab, "gpu-01") == "up"
