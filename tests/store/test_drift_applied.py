"""Applied fingerprints and drift history (first seen, resolved, scoped observations)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from reconciler.store import DriftItemRecord as D
from reconciler.store import StateStore

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
ENGINE = "https://engine.example.com/ovirt-engine/api"


def test_applied_fingerprints_per_engine(store: StateStore) -> None:
    assert store.applied(ENGINE) == {}
    store.record_applied(ENGINE, "host:gpu-01", "fp-1", "r-1")
    store.record_applied(ENGINE, "vm:cad", "fp-2", "r-1")
    store.record_applied(ENGINE, "host:gpu-01", "fp-3", "r-2")
    store.record_applied("lab:small", "host:gpu-01", "fp-x", "r-3")
    assert store.applied(ENGINE) == {"host:gpu-01": "fp-3", "vm:cad": "fp-2"}
    assert store.applied("lab:small") == {"host:gpu-01": "fp-x"}


def test_drift_keeps_first_seen_and_resolves(store: StateStore) -> None:
    cmdline = D("host:gpu-01", "kernel-cmdline", "intel_iommu=on missing from /proc/cmdline")
    device = D("vm:cad", "vm-devices", "pci_0000_03_00_0 detached out of band")

    change = store.record_drift(ENGINE, [cmdline, device], T0)
    assert set(change.new) == {cmdline, device} and change.resolved == ()

    change = store.record_drift(ENGINE, [cmdline, device], T0 + timedelta(minutes=5))
    assert change.new == () and change.resolved == ()
    assert store.drift_since(ENGINE) == {
        ("host:gpu-01", "kernel-cmdline", cmdline.message): T0,
        ("vm:cad", "vm-devices", device.message): T0}

    change = store.record_drift(ENGINE, [cmdline], T0 + timedelta(minutes=10))
    assert change.resolved == (device,) and change.new == ()
    assert list(store.drift_since(ENGINE)) == [("host:gpu-01", "kernel-cmdline", cmdline.message)]

    # The same drift coming back is a new occurrence with its own first-seen time.
    later = T0 + timedelta(minutes=20)
    assert store.record_drift(ENGINE, [cmdline, device], later).new == (device,)
    assert store.drift_since(ENGINE)[("vm:cad", "vm-devices", device.message)] == later

    history = store.drift_history(ENGINE)
    assert [(h.key, h.first_seen, h.resolved_at) for h in history] == [
        ("vm:cad", later, None),
        ("vm:cad", T0, T0 + timedelta(minutes=10)),     # same first-seen: newest row first
        ("host:gpu-01", T0, None),
    ]
    assert history[2].last_seen == later
    assert [h.first_seen for h in store.drift_history(ENGINE, include_open=False)] == [T0]
    assert len(store.drift_history(ENGINE, object_key="vm:cad")) == 2
    assert len(store.drift_history(ENGINE, limit=1)) == 1
    assert store.drift_history("lab:other") == []


def test_a_changed_message_is_a_different_item(store: StateStore) -> None:
    store.record_drift(ENGINE, [D("host:a", "modprobe", "nouveau loaded")], T0)
    change = store.record_drift(ENGINE, [D("host:a", "modprobe", "nouveau and nvidiafb loaded")],
                                T0 + timedelta(seconds=1))
    assert [i.message for i in change.new] == ["nouveau and nvidiafb loaded"]
    assert [i.message for i in change.resolved] == ["nouveau loaded"]


def test_scoped_observation_leaves_other_objects_alone(store: StateStore) -> None:
    a = D("host:a", "kernel-cmdline", "x")
    b = D("host:b", "kernel-cmdline", "y")
    store.record_drift(ENGINE, [a, b], T0)
    change = store.record_drift(ENGINE, [], T0 + timedelta(seconds=1), scope=["host:a"])
    assert change.resolved == (a,)
    assert list(store.drift_since(ENGINE)) == [("host:b", "kernel-cmdline", "y")]


def test_drift_rejects_naive_times(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.record_drift(ENGINE, [], datetime(2026, 1, 1))
