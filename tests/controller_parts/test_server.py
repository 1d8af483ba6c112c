"""The status server over real HTTP: health, readiness, /status JSON and /metrics."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.controller.metrics import ControllerMetrics
from reconciler.controller.server import (ControllerServer, ControllerState, ServerError,
                                          drift_counts)
from tests.support.waiting import wait_for


@dataclass(frozen=True)
class Drift:
    key: str
    cls: str
    message: str


@pytest.fixture
def served() -> Iterator[tuple[ControllerServer, ControllerState, ControllerMetrics]]:
    state = ControllerState(mode="observe", engine="lab:small")
    metrics = ControllerMetrics()
    with ControllerServer(state, metrics, "127.0.0.1", 0) as server:
        yield server, state, metrics


def get(server: ControllerServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(server.url + path, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers["Content-Type"], err.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_picks_a_free_port_and_answers_404_elsewhere(served: Any) -> None:
    server, _, _ = served
    assert server.port > 0 and server.url.endswith(str(server.port))
    status, _, body = get(server, "/nope")
    assert status == 404 and "/status" in body


def test_health_follows_the_loop(served: Any) -> None:
    server, state, _ = served
    assert get(server, "/healthz")[:1] == (503,)
    state.loop_started()
    assert get(server, "/healthz")[0] == 200
    state.stall_after = 0.01
    status, _, body = wait_for(lambda: (r := get(server, "/healthz"))[0] == 503 and r,
                               what="/healthz to report the stalled loop")
    assert "not progressed" in body
    state.beat()
    state.stall_after = 600
    assert get(server, "/healthz")[0] == 200
    state.loop_stopped()
    assert get(server, "/healthz")[0] == 503


def test_ready_after_spec_and_first_pass_with_reasons(served: Any) -> None:
    server, state, _ = served
    state.loop_started()
    status, _, body = get(server, "/readyz")
    assert status == 503 and "spec is not loaded" in body
    state.spec_failed("specs/a.yaml:3:1: vms[0].name: required")
    status, _, body = get(server, "/readyz")
    assert status == 503 and "specs/a.yaml:3:1" in body
    state.spec_loaded("abc123")
    status, _, body = get(server, "/readyz")
    assert status == 503 and "first reconcile pass" in body
    state.pass_started()
    state.pass_finished("ok", 0.4)
    assert get(server, "/readyz")[0] == 200


def test_not_ready_while_the_last_pass_failed_and_ready_again_after_a_good_one(
        served: Any) -> None:
    server, state, _ = served
    state.loop_started()
    state.spec_loaded("abc123")
    state.pass_started()
    state.pass_finished("error", 1.0, error="engine: connection refused")
    status, _, body = get(server, "/readyz")
    assert status == 503 and "last reconcile pass failed" in body
    assert "connection refused" in body
    state.pass_started()
    state.pass_finished("drift", 0.5)
    assert get(server, "/readyz")[0] == 200
    state.pass_started()
    state.pass_finished("error", 1.0, error="engine: 503")
    assert get(server, "/readyz")[0] == 503
    state.pass_started()
    state.pass_finished("ok", 0.5)
    state.spec_failed("specs/a.yaml:4:3: bad")
    status, _, body = get(server, "/readyz")
    # A bad edit does not make a controller serving the last good spec unready; it says why.
    assert status == 200 and "specs/a.yaml:4:3" in body


def test_status_reports_pass_drift_and_running_apply(served: Any) -> None:
    server, state, _ = served
    from datetime import datetime, timezone
    since = datetime(2026, 11, 25, 7, 0, tzinfo=timezone.utc)
    cmdline = Drift("host:gpu-01", "kernel-cmdline", "intel_iommu=on not booted")
    state.spec_loaded("rev-7")
    state.pass_started()
    state.pass_finished("error", 2.5, error="engine unreachable", drift=[cmdline],
                        first_seen={("host:gpu-01", "kernel-cmdline", cmdline.message): since},
                        trigger="resync")
    state.apply_started("r-20261125-081500-ab12", steps_total=4)
    state.apply_step("r-20261125-081500-ab12", "host-cycle gpu-01", steps_done=1)

    status, ctype, body = get(server, "/status")
    assert status == 200 and ctype == "application/json"
    doc = json.loads(body)
    assert doc["mode"] == "observe" and doc["revision"] == "rev-7" and doc["engine"] == "lab:small"
    assert doc["last_pass"]["result"] == "error" and doc["last_pass"]["error"] == "engine unreachable"
    assert doc["last_pass"]["duration"] == 2.5 and doc["last_pass"]["trigger"] == "resync"
    assert doc["last_pass"]["time"].endswith("Z")
    assert doc["drift"] == {"count": 1, "items": [{
        "key": "host:gpu-01", "class": "kernel-cmdline", "message": "intel_iommu=on not booted",
        "since": "2026-11-25T07:00:00Z"}]}
    assert doc["apply"]["run_id"] == "r-20261125-081500-ab12"
    assert doc["apply"]["step"] == "host-cycle gpu-01"
    assert (doc["apply"]["steps_done"], doc["apply"]["steps_total"]) == (1, 4)

    assert doc["applied_revision"] is None
    state.apply_finished("r-20261125-081500-ab12", "ok", "4 steps", revision="rev-7")
    doc = json.loads(get(server, "/status")[2])
    assert doc["apply"] is None and doc["last_apply"]["outcome"] == "ok"
    assert doc["last_apply"]["revision"] == "rev-7" and doc["applied_revision"] == "rev-7"
    # A failed apply of a newer revision does not move the applied revision.
    state.apply_finished("r-20261125-082000-cd34", "failed", "host down", revision="rev-8")
    doc = json.loads(get(server, "/status")[2])
    assert doc["last_apply"]["revision"] == "rev-8" and doc["applied_revision"] == "rev-7"


def test_metrics_endpoint_is_prometheus_text_from_its_own_registry(served: Any) -> None:
    server, _, metrics = served
    metrics.record_pass("drift", 1.2, at=1_700_000_000)
    metrics.record_pass("ok", 0.3, at=1_700_000_060)
    metrics.set_drift(drift_counts([Drift("a", "kernel-cmdline", "x"),
                                    Drift("b", "kernel-cmdline", "y"),
                                    Drift("c", "vm-devices", "z")]))
    metrics.apply_step("ok")
    metrics.apply_step("ok")
    metrics.apply_step("failed")
    metrics.engine_request()
    metrics.engine_request(failed=True)
    metrics.engine_requests_add(10, 1)

    status, ctype, body = get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    s = samples(body)
    p = "gpu_reconciler_"
    assert s[(p + "drift_items", (("class", "kernel-cmdline"),))] == 2
    assert s[(p + "drift_items", (("class", "vm-devices"),))] == 1
    assert s[(p + "last_pass_timestamp_seconds", ())] == 1_700_000_060
    assert s[(p + "last_pass_result", (("result", "ok"),))] == 1
    assert s[(p + "last_pass_result", (("result", "drift"),))] == 0
    assert s[(p + "passes_total", (("result", "ok"),))] == 1
    assert s[(p + "passes_total", (("result", "drift"),))] == 1
    assert s[(p + "passes_total", (("result", "error"),))] == 0
    assert s[(p + "pass_duration_seconds_count", ())] == 2
    assert s[(p + "pass_duration_seconds_sum", ())] == pytest.approx(1.5)
    assert s[(p + "apply_steps_total", (("outcome", "ok"),))] == 2
    assert s[(p + "apply_steps_total", (("outcome", "failed"),))] == 1
    assert s[(p + "apply_steps_total", (("outcome", "skipped"),))] == 0
    assert s[(p + "engine_requests_total", ())] == 12
    assert s[(p + "engine_errors_total", ())] == 2
    # Its own registry: none of the process-wide default collectors.
    assert not any(name.startswith(("process_", "python_")) for name, _ in s)

    metrics.set_drift({"vm-devices": 1})
    s = samples(get(server, "/metrics")[2])
    assert s[(p + "drift_items", (("class", "kernel-cmdline"),))] == 0


def test_two_controllers_in_one_process_do_not_share_metrics() -> None:
    a, b = ControllerMetrics(), ControllerMetrics()
    a.apply_step("ok")
    s = samples(b.render().decode())
    assert s[("gpu_reconciler_apply_steps_total", (("outcome", "ok"),))] == 0
    with pytest.raises(ValueError, match="pass result"):
        a.record_pass("great", 1.0)  # type: ignore[arg-type]


def test_tracked_values_are_read_at_scrape_time() -> None:
    m = ControllerMetrics()
    box = {"dropped": 0}
    m.track("webhook_dropped_events", "Webhook events dropped", lambda: box["dropped"])
    box["dropped"] = 7
    assert samples(m.render().decode())[("gpu_reconciler_webhook_dropped_events", ())] == 7


def test_concurrent_requests_while_the_loop_writes(served: Any) -> None:
    server, state, _ = served
    state.loop_started()
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            state.pass_started()
            state.pass_finished("ok", 0.01, drift=[Drift(f"host:{i}", "c", "m")])
            i += 1
            time.sleep(0.001)

    t = threading.Thread(target=writer)
    t.start()
    try:
        results = []
        threads = [threading.Thread(target=lambda: results.append(get(server, "/status")[0]))
                   for _ in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        stop.set()
        t.join()
    assert results == [200] * 20


def test_address_in_use_is_a_clear_error(served: Any) -> None:
    server, state, metrics = served
    with pytest.raises(ServerError, match=f"127.0.0.1:{server.port}"):
        ControllerServer(state, metrics, "127.0.0.1", server.port).start()


def test_stop_is_idempotent_and_frees_the_port() -> None:
    state, metrics = ControllerState(), ControllerMetrics()
    server = ControllerServer(state, metrics, port=0).start()
    port = server.port
    server.stop()
    server.stop()
    again = ControllerServer(state, metrics, port=port).start()
    assert get(again, "/healthz")[0] == 503
    again.stop()


def test_status_takes_the_plans_drift_items(served: Any) -> None:
    from reconciler.plan.result import DriftItem
    server, state, metrics = served
    items = [DriftItem("host:gpu-01", "drift", "intel_iommu=on missing"),
             DriftItem("vm:cad", "blocked", "no free M60 instance"),
             DriftItem("vm:render", "drift", "console is SPICE")]
    state.pass_finished("drift", 1.0, drift=items)
    metrics.set_drift(drift_counts(items))
    doc = json.loads(get(server, "/status")[2])
    assert [(i["key"], i["class"]) for i in doc["drift"]["items"]] == [
        ("host:gpu-01", "drift"), ("vm:cad", "blocked"), ("vm:render", "drift")]
    s = samples(get(server, "/metrics")[2])
    assert s[("gpu_reconciler_drift_items", (("class", "drift"),))] == 2
    assert s[("gpu_reconciler_drift_items", (("class", "blocked"),))] == 1


@pytest.mark.slow        # waits out the server's request timeout
def test_a_silent_client_is_dropped_after_the_request_timeout() -> None:
    import socket
    state = ControllerState()
    with ControllerServer(state, ControllerMetrics(), "127.0.0.1", 0,
                          request_timeout=0.3) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle:
            # Sends nothing: the server closes the connection instead of waiting for ever.
            assert idle.recv(1) == b""
        assert get(server, "/healthz")[0] == 503          # and still answers others
