"""`reconcile controller` in a subprocess against the lab engine: drift from out-of-band changes,
observe mode changing nothing, apply mode healing, spec edits, bad edits, /metrics."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import pytest

from reconciler_lab.server import LabServer
from reconciler.store import Store

from .conftest import (IN_SYNC, mutating_requests, remove_vgpus, sdk_connection,
                       set_kernel_cmdline, vgpu_count, wait_for, write_spec)

pytestmark = pytest.mark.lab


def _metric(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_observe_mode_reports_out_of_band_changes_and_changes_nothing(
        lab: LabServer, tmp_path: Path, start_controller: Any) -> None:
    spec = write_spec(lab, tmp_path / "specs")
    _Hook.received = []
    hook = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        # The URL from a file, as with a token in it: never on the command line.
        url_file = tmp_path / "webhook-url"
        url_file.write_text(f"# team channel\nhttp://127.0.0.1:{hook.server_port}/hook?t=s3cret\n")
        ctl = start_controller(str(spec.parent), "--state", str(tmp_path / "state.db"),
                               "--resync", "10m", "--events-interval", "0.2s",
                               "--notify-webhook-file", str(url_file))
        status = ctl.wait_ready()
        assert status["mode"] == "observe"
        assert status["drift"]["count"] == 0, status
        assert status["last_pass"]["result"] == "ok"
        assert status["engine"] == lab.url

        conn = sdk_connection(lab)
        try:
            assert remove_vgpus(conn, "vdi-01") == 1
            set_kernel_cmdline(conn, "m60-01", "rdblacklist=nouveau")
        finally:
            conn.close()

        wait_for("both changes in /status",
                 lambda: {"vm:vdi-01", "host:m60-01"} <= ctl.drift_keys())
        status = ctl.status()
        # Seen through the engine's event log, not the 10-minute resync.
        assert "engine-event" in status["last_pass"]["trigger"]
        assert status["last_pass"]["result"] == "drift"
        items = {i["key"]: i for i in status["drift"]["items"]}
        # Both objects matched the spec when the controller started, so this is drift (the fleet
        # moved away), not a pending spec change.
        assert items["host:m60-01"]["class"] == "drift"
        assert items["vm:vdi-01"]["class"] == "drift"
        assert items["vm:vdi-01"]["since"] is not None

        metrics = ctl.metrics()
        drift = _metric(metrics, "gpu_reconciler_drift_items")
        assert drift[(("class", "drift"),)] >= 2
        passes = _metric(metrics, "gpu_reconciler_passes_total")
        assert passes[(("result", "drift"),)] >= 1
        assert _metric(metrics, "gpu_reconciler_engine_requests_total")[()] > 0

        # Observe mode: the only writes the lab ever saw are the two made above.
        writes = mutating_requests(lab)
        assert len(writes) == 2, writes
        assert writes[0][0] == "DELETE" and "mediateddevices" in writes[0][1]
        assert writes[1][0] == "PUT" and "/hosts/" in writes[1][1]
        wait_for("drift.new notifications",
                 lambda: {e["details"]["key"] for e in _Hook.received
                          if e["event"] == "drift.new"} >= {"vm:vdi-01", "host:m60-01"})
        assert ctl.terminate() == 0
        assert "s3cret" not in ctl.logs()
    finally:
        hook.shutdown()
        hook.server_close()
    with Store(tmp_path / "state.db") as store:
        history = store.drift_history(lab.url)
    assert {h.key for h in history if h.resolved_at is None} >= {"vm:vdi-01", "host:m60-01"}


def test_apply_mode_heals_a_removed_vgpu(lab: LabServer, tmp_path: Path,
                                         start_controller: Any) -> None:
    spec = write_spec(lab, tmp_path / "specs")
    ctl = start_controller(str(spec.parent), "--state", str(tmp_path / "state.db"),
                           "--mode", "apply", "--max-disruption", "vm-restart",
                           # vGPU changes log no engine event (as on a real engine): the resync
                           # is what notices them.
                           "--resync", "1s", "--events-interval", "0.2s")
    assert ctl.wait_ready()["drift"]["count"] == 0
    conn = sdk_connection(lab)
    try:
        remove_vgpus(conn, "vdi-01")
        wait_for("the vGPU to be added back", lambda: vgpu_count(conn, "vdi-01") == 1)
        status = wait_for("an apply to finish and the drift to clear",
                          lambda: (s := ctl.status())["last_apply"] and not s["apply"]
                          and s["drift"]["count"] == 0 and s)
    finally:
        conn.close()
    assert status["last_apply"]["outcome"] == "ok", status
    assert status["applied_revision"] == status["revision"] == status["last_apply"]["revision"]
    adds = [w for w in mutating_requests(lab) if w[0] == "POST" and "mediateddevices" in w[1]]
    assert len(adds) == 1
    assert ctl.terminate() == 0
    with Store(tmp_path / "state.db") as store:
        runs = [r for r in store.runs() if r.kind == "apply"]
    assert runs and runs[0].outcome == "ok"


def test_apply_mode_leaves_actions_above_max_disruption_pending(
        lab: LabServer, tmp_path: Path, start_controller: Any) -> None:
    spec = write_spec(lab, tmp_path / "specs")
    ctl = start_controller(str(spec.parent), "--state", str(tmp_path / "state.db"),
                           "--mode", "apply", "--resync", "1s", "--events-interval", "0.2s")
    ctl.wait_ready()
    conn = sdk_connection(lab)
    try:
        remove_vgpus(conn, "vdi-01")  # no engine event: seen by the 1 s resync
        wait_for("the drift", lambda: "vm:vdi-01" in ctl.drift_keys())
        # Default --max-disruption none: adding a vGPU is a vm-restart action, never run.
        assert vgpu_count(conn, "vdi-01") == 0
    finally:
        conn.close()
    assert ctl.status()["last_apply"] is None
    assert len(mutating_requests(lab)) == 1
    assert ctl.terminate() == 0


def test_spec_edit_replans_and_bad_edit_keeps_last_good(lab: LabServer, tmp_path: Path,
                                                        start_controller: Any) -> None:
    specs = tmp_path / "specs"
    spec = write_spec(lab, specs)
    ctl = start_controller(str(specs), "--state", str(tmp_path / "state.db"),
                           "--resync", "10m", "--events-interval", "0.2s")
    first = ctl.wait_ready()
    assert first["drift"]["count"] == 0

    wanted = json.loads(json.dumps(IN_SYNC))
    wanted["vms"][0]["vgpu"]["instances"] = 2
    write_spec(lab, specs, wanted)
    status = wait_for("the edit to be planned",
                      lambda: (s := ctl.status())["revision"] != first["revision"]
                      and "vm:vdi-01" in {i["key"] for i in s["drift"]["items"]} and s)
    assert status["spec_error"] is None
    assert "spec" in status["last_pass"]["trigger"]
    good_revision = status["revision"]

    # A bad edit: a string where the schema wants a number.
    text = spec.read_text().replace("instances: 2", "instances: two")
    assert "instances: two" in text
    spec.write_text(text)
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "instances: two" in ln)
    status = wait_for("the spec error", lambda: (s := ctl.status())["spec_error"] and s)
    assert f"{spec}:{line}:" in status["spec_error"]
    assert status["revision"] == good_revision          # the last good spec stays in force
    assert "vm:vdi-01" in {i["key"] for i in status["drift"]["items"]}
    assert any(f"{spec}:{line}:" in e.get("issue", "") for e in ctl.log_events())
    assert ctl.get("/readyz")[0] == 200                  # still serving the good revision

    # Fixing the file clears the error.
    write_spec(lab, specs)
    status = wait_for("the fix", lambda: (s := ctl.status())["spec_error"] is None
                      and s["drift"]["count"] == 0 and s)
    assert status["revision"] == first["revision"]
    assert mutating_requests(lab) == []
    assert ctl.terminate() == 0


def test_first_spec_invalid_is_not_ready_and_retries(lab: LabServer, tmp_path: Path,
                                                     start_controller: Any) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "fleet.yaml").write_text("apiVersion: gpu-reconciler/v1\nengine: [\n")
    ctl = start_controller(str(specs), "--state", str(tmp_path / "state.db"))
    wait_for("the spec error", lambda: ctl.status()["spec_error"])
    code, body = ctl.get("/readyz")
    assert code == 503 and "spec" in body
    assert ctl.get("/healthz")[0] == 200
    write_spec(lab, specs)
    status = ctl.wait_ready()
    assert status["spec_error"] is None and status["drift"]["count"] == 0
    assert ctl.terminate() == 0
