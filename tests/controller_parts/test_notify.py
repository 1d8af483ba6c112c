"""WebhookNotifier against a real local HTTP receiver that fails on purpose."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import structlog

from reconciler.controller.notify import NotifyError, WebhookNotifier
from tests.controller_parts.conftest import Receiver


def fast(url: str, **kw: object) -> WebhookNotifier:
    return WebhookNotifier(url, backoff=0.01, backoff_cap=0.05, timeout=5, **kw)  # type: ignore[arg-type]


def test_events_arrive_in_order_with_the_documented_shape(receiver: Receiver) -> None:
    n = fast(receiver.url)
    n.notify("drift.new", "lab:small", {"key": "host:gpu-01", "class": "kernel-cmdline"})
    n.notify("apply.started", "lab:small", {"run_id": "r-1"})
    n.notify("apply.finished", "lab:small", {"run_id": "r-1", "steps": 3})
    assert n.close(10) is True
    assert [e["event"] for e in receiver.received] == ["drift.new", "apply.started",
                                                       "apply.finished"]
    first = receiver.received[0]
    assert set(first) == {"event", "at", "engine", "details"}
    assert first["engine"] == "lab:small" and first["at"].endswith("Z")
    assert first["details"] == {"key": "host:gpu-01", "class": "kernel-cmdline"}
    assert receiver.headers[0]["Content-Type"] == "application/json"
    assert (n.sent, n.failed, n.dropped) == (3, 0, 0)


def test_failures_are_retried_until_delivered(receiver: Receiver) -> None:
    receiver.fail_first = 3
    n = fast(receiver.url, retries=5)
    n.notify("apply.failed", "lab:small", {"run_id": "r-2", "error": "host did not return"})
    n.notify("drift.resolved", "lab:small", {"key": "vm:cad"})
    assert n.close(10) is True
    assert receiver.attempts == 5           # 3 failures, then both delivered
    assert [e["event"] for e in receiver.received] == ["apply.failed", "drift.resolved"]
    assert (n.sent, n.failed) == (2, 0)


def test_gives_up_after_the_retry_budget(receiver: Receiver) -> None:
    receiver.fail_first = 100
    n = fast(receiver.url, retries=2)
    n.notify("drift.new", "lab:small", {})
    n.notify("drift.new", "lab:small", {})
    assert n.wait_idle(10)
    assert receiver.attempts == 6 and receiver.received == []
    assert (n.sent, n.failed) == (0, 2)
    n.close(1)


def test_client_errors_are_not_retried(receiver: Receiver) -> None:
    receiver.status_after = 404
    n = fast(receiver.url, retries=5)
    # A 404 after the body is read still counts as "received" by our fake; what matters is one try.
    n.notify("drift.new", "lab:small", {})
    assert n.wait_idle(10)
    assert receiver.attempts == 1 and n.failed == 1
    n.close(1)


def test_full_queue_drops_oldest_and_never_blocks(receiver: Receiver) -> None:
    receiver.gate.clear()                   # the receiver holds the first POST
    n = fast(receiver.url, max_queue=3)
    n.notify("apply.started", "e", {"i": 0})
    assert receiver.arrived.wait(10)        # the sender has taken event 0 and is stuck on it
    for i in range(1, 8):
        n.notify("drift.new", "e", {"i": i})  # returns at once although nothing can be sent
    assert n.dropped == 4
    receiver.gate.set()
    assert n.close(10) is True
    assert [e["details"]["i"] for e in receiver.received] == [0, 5, 6, 7]


def test_close_with_an_unreachable_receiver_returns_within_its_timeout() -> None:
    n = WebhookNotifier("http://127.0.0.1:9/never", backoff=5, backoff_cap=5, timeout=1)
    n.notify("drift.new", "e", {})
    n.notify("drift.new", "e", {})
    assert n.close(0.3) is False
    assert n.dropped >= 1
    n.notify("drift.new", "e", {})          # after close: counted, not queued
    assert n.pending() == 0


def test_signature_lets_the_receiver_authenticate(receiver: Receiver) -> None:
    n = fast(receiver.url, secret="s3cret")
    n.notify("apply.finished", "lab:small", {"run_id": "r-3"})
    assert n.close(10)
    body = json.dumps(receiver.received[0], sort_keys=True).encode()
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert receiver.headers[0]["X-Gpu-Reconciler-Signature"] == f"sha256={expected}"


def test_bad_configuration_and_events_are_clear_errors(receiver: Receiver) -> None:
    with pytest.raises(NotifyError, match="http"):
        WebhookNotifier("ftp://example.com/x")
    with pytest.raises(NotifyError, match="max_queue"):
        WebhookNotifier(receiver.url, max_queue=0)
    with pytest.raises(NotifyError, match="CA file"):
        WebhookNotifier("https://example.com/x", ca_file="/nonexistent/ca.pem")
    n = fast(receiver.url)
    with pytest.raises(ValueError, match="unknown event"):
        n.notify("drift.maybe", "e", {})  # type: ignore[arg-type]
    n.close(1)


def test_the_url_token_is_never_logged(receiver: Receiver) -> None:
    receiver.fail_first = 100
    with structlog.testing.capture_logs() as logs:
        n = fast(receiver.url, retries=1)
        n.notify("drift.new", "e", {})
        assert n.wait_idle(10)
        n.close(1)
    assert logs, "expected retry and give-up log events"
    assert "SECRET-TOKEN" not in repr(logs)
    assert n.target.startswith("http://127.0.0.1:")
