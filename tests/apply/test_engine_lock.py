"""One apply per engine, whatever the state file, process or machine: the lock lives on the
engine (a quota of its data center, whose name the engine keeps unique)."""
from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from reconciler.apply.engine_lock import LOCK_NAME, Holder
from reconciler_lab.server import LabServer
from tests.support.waiting import wait_for

from .test_signals import _deactivating, _fleet, _spec, _start_apply
from .conftest import reconcile

pytestmark = pytest.mark.lab


def _quotas(lab: LabServer) -> Any:
    conn = sdk.Connection(url=lab.url, username=lab.username, password=lab.password,
                          ca_file=str(lab.ca_file))
    dc = conn.system_service().data_centers_service().list()[0]
    return conn, conn.system_service().data_centers_service().data_center_service(dc.id) \
        .quotas_service()


def _plant(lab: LabServer, holder: Holder) -> None:
    conn, quotas = _quotas(lab)
    try:
        quotas.add(types.Quota(name=LOCK_NAME, description=holder.to_text()))
    finally:
        conn.close()


def _engine_now(lab: LabServer) -> float:
    conn, _ = _quotas(lab)
    try:
        return conn.system_service().get().time.timestamp()
    finally:
        conn.close()


def test_a_second_apply_with_another_state_file_is_refused_naming_the_holder(
        tmp_path: Path) -> None:
    with LabServer(_fleet(), tmp_path / "lab", time_scale=0.01) as lab:
        spec = _spec(lab, tmp_path)
        first = _start_apply(spec, tmp_path / "first.db")
        try:
            wait_for(lambda: _deactivating(tmp_path / "first.db") or first.poll() is not None,
                     timeout=60)
            assert first.poll() is None, first.communicate()
            second = reconcile("apply", str(spec), "--yes", "--state", str(tmp_path / "b.db"),
                               cwd=tmp_path)
            assert second.returncode == 1, second.stdout + second.stderr
            assert "another apply holds this engine: run r-" in second.stderr
            assert f"(pid {first.pid})" in second.stderr and "held since" in second.stderr
        finally:
            first.send_signal(signal.SIGTERM)
            first.communicate(timeout=60)
        # Released at the end of the first run: an apply goes ahead again.
        conn, quotas = _quotas(lab)
        try:
            assert [q.name for q in quotas.list()] == []
        finally:
            conn.close()


def test_a_lock_not_renewed_is_taken_over_and_a_live_one_is_not(tmp_path: Path) -> None:
    with LabServer(_fleet(), tmp_path / "lab", time_scale=0.01) as lab:
        spec = _spec(lab, tmp_path)
        now = _engine_now(lab)
        live = Holder("r-20261204-000000-aaaa", "ops", "elsewhere.example", 4242, None,
                      now - 300, now - 5)
        _plant(lab, live)
        refused = reconcile("apply", str(spec), "--yes", "--state", str(tmp_path / "a.db"),
                            "--max-disruption", "none", cwd=tmp_path)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "run r-20261204-000000-aaaa of ops on elsewhere.example (pid 4242)" in \
            refused.stderr
        # --force-unlock does not take a lock renewed moments ago either.
        forced = reconcile("apply", str(spec), "--yes", "--state", str(tmp_path / "a.db"),
                           "--max-disruption", "none", "--force-unlock", live.run_id,
                           cwd=tmp_path)
        assert forced.returncode == 1 and "another apply holds this engine" in forced.stderr

        conn, quotas = _quotas(lab)
        try:
            lock = next(q for q in quotas.list() if q.name == LOCK_NAME)
            dead = Holder(live.run_id, "ops", "elsewhere.example", 4242, None, now - 600,
                          now - 500)
            quotas.quota_service(lock.id).update(types.Quota(description=dead.to_text()))
        finally:
            conn.close()
        taken = reconcile("apply", str(spec), "--yes", "--state", str(tmp_path / "a.db"),
                          "--max-disruption", "none", cwd=tmp_path)
        assert taken.returncode == 0, taken.stdout + taken.stderr
        assert "took over the engine's apply lock from run r-20261204-000000-aaaa" in taken.stdout


def test_the_holder_fits_the_quota_description_and_reads_back() -> None:
    holder = Holder("r-20261204-223715-ca2c", "x" * 100, "h" * 300, 123456, 987654321,
                    1764887835.2, 1764887900.9)
    text = holder.to_text()
    assert len(text) <= 250
    back = Holder.from_text(text)
    assert back is not None and back.run_id == holder.run_id and back.pid == 123456
    assert back.beat == round(holder.beat)
    assert Holder.from_text("not json") is None and Holder.from_text('{"run": 1}') is None
