"""Apply mode heals an out-of-band edit of a host's kernel arguments (the second out-of-band
change the controller must see and, within --max-disruption, undo)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler_lab.server import LabServer

from .conftest import mutating_requests, sdk_connection, set_kernel_cmdline, wait_for, write_spec

pytestmark = pytest.mark.lab


def _cmdline(conn: Any, name: str) -> tuple[str, str]:
    hosts = conn.system_service().hosts_service()
    host = hosts.list(search=f"name={name}")[0]
    return host.os.custom_kernel_cmdline or "", host.os.reported_kernel_cmdline or ""


def test_apply_mode_heals_edited_kernel_args(lab: LabServer, tmp_path: Path,
                                             start_controller: Any) -> None:
    spec = write_spec(lab, tmp_path / "specs")
    ctl = start_controller(str(spec.parent), "--state", str(tmp_path / "state.db"),
                           "--mode", "apply", "--max-disruption", "host-reboot",
                           "--resync", "10m", "--events-interval", "0.2s")
    assert ctl.wait_ready()["drift"]["count"] == 0
    conn = sdk_connection(lab)
    try:
        before = _cmdline(conn, "m60-01")
        assert "intel_iommu=on" in before[0]
        set_kernel_cmdline(conn, "m60-01", "rdblacklist=nouveau")
        wait_for("the kernel args to be put back",
                 lambda: "intel_iommu=on" in _cmdline(conn, "m60-01")[0], timeout=60)
        status = wait_for("the apply to finish and the drift to clear",
                          lambda: (s := ctl.status())["last_apply"] and not s["apply"]
                          and s["drift"]["count"] == 0 and s, timeout=60)
        after = _cmdline(conn, "m60-01")
    finally:
        conn.close()
    assert status["last_apply"]["outcome"] == "ok", status
    assert set(after[0].split()) == set(before[0].split())
    assert "intel_iommu=on" in after[1]
    host_writes = [w for w in mutating_requests(lab) if "/hosts/" in w[1]]
    # The edit above, then ours; the host already boots these args, so it is never cycled.
    assert [w[0] for w in host_writes] == ["PUT", "PUT"], host_writes
    assert ctl.terminate() == 0
