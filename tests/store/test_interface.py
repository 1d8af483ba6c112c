"""The SQLite store and its parts implement the protocols callers and other backends rely on.

There is no type checker in the test run, so the signatures are compared here: a method that
drifts from its protocol (a renamed parameter, a lost default) fails before a caller does.
"""
from __future__ import annotations

import inspect

import pytest

from reconciler.store import (AppliedFingerprints, ApplyLock, DriftHistory, Journal, Leases,
                              RunLog, StateStore, Store)
from reconciler.store.applied import SqlAppliedFingerprints
from reconciler.store.drift import SqlDriftHistory
from reconciler.store.journal import SqlJournal
from reconciler.store.lease import SqlLeases
from reconciler.store.lock import SqlApplyLock
from reconciler.store.postgres import PostgresStore
from reconciler.store.runs import SqlRunLog

IMPLEMENTATIONS = [
    (RunLog, SqlRunLog), (Journal, SqlJournal), (ApplyLock, SqlApplyLock),
    (AppliedFingerprints, SqlAppliedFingerprints), (DriftHistory, SqlDriftHistory),
    (Leases, SqlLeases),
    (RunLog, Store), (Journal, Store), (ApplyLock, Store), (AppliedFingerprints, Store),
    (DriftHistory, Store), (Leases, Store), (StateStore, Store),
    (StateStore, PostgresStore),
]


def _members(protocol: type) -> list[str]:
    """The methods a protocol declares, its bases' included."""
    return sorted({name for klass in protocol.__mro__ if klass.__dict__.get("_is_protocol")
                   for name, value in vars(klass).items()
                   if callable(value) and (not name.startswith("_") or name in
                                           ("__enter__", "__exit__"))})


def _parameters(fn: object) -> list[tuple[str, object, object, object]]:
    return [(p.name, p.kind, p.default, p.annotation)
            for p in inspect.signature(fn).parameters.values()]   # type: ignore[arg-type]


@pytest.mark.parametrize("protocol, implementation", IMPLEMENTATIONS,
                         ids=lambda v: v.__name__)
def test_every_protocol_method_is_implemented_with_the_same_parameters(
        protocol: type, implementation: type) -> None:
    members = _members(protocol)
    assert members
    for name in members:
        assert hasattr(implementation, name), f"{implementation.__name__} lacks {name}"
        assert _parameters(getattr(implementation, name)) == \
            _parameters(getattr(protocol, name)), f"{implementation.__name__}.{name}"


def test_the_store_under_test_is_a_state_store(store: StateStore) -> None:
    assert isinstance(store, StateStore)
